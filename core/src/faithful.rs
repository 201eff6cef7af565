//! Values that JSON cannot hold faithfully, refused before anything
//! happens.
//!
//! Idempotency keys, queued writes and recorded outcomes are JSON. serde_json
//! writes an `f64` NaN or ±infinity as `null`, silently: a queued write with
//! a NaN argument would be acknowledged, stored as `null` and fail for good
//! on delivery, and NaN, +inf and −inf would all derive the same key.
//! [`to_value`] walks the value first and refuses such floats, naming where
//! they are, so the caller learns at call time, before the vendor is called
//! or anything is stored. (Integers past JSON's range and maps whose keys are
//! not strings, numbers or booleans are refused by serde_json itself.)

use std::fmt;

use serde::ser::{self, Serialize};

/// `value` as JSON, or why it cannot be stored faithfully (a NaN or
/// infinite float, with its place: `amount`, `lines[2].price`), or why it
/// has no JSON form at all.
pub(crate) fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<serde_json::Value, String> {
    check(value)?;
    serde_json::to_value(value).map_err(|error| error.to_string())
}

/// Whether `value` holds only what JSON stores faithfully; the place and
/// the value of the first float that it cannot hold.
pub(crate) fn check<T: Serialize + ?Sized>(value: &T) -> Result<(), String> {
    let mut path = String::new();
    match value.serialize(Checker { path: &mut path }) {
        Ok(()) => Ok(()),
        Err(Refused::Float(float)) if path.is_empty() => Err(format!(
            "it is {float}, which JSON cannot hold (it would be stored as null)"
        )),
        Err(Refused::Float(float)) => Err(format!(
            "`{}` is {float}, which JSON cannot hold (it would be stored as null)",
            path.trim_start_matches('.')
        )),
        // Not ours to judge: serde_json reports these itself.
        Err(Refused::Other(_)) => Ok(()),
    }
}

#[derive(Debug)]
enum Refused {
    Float(f64),
    Other(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Float(float) => write!(f, "{float}"),
            Refused::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Refused {}

impl ser::Error for Refused {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Refused::Other(message.to_string())
    }
}

/// A serializer that writes nothing: it only looks at every float, and
/// keeps the path to where it is.
struct Checker<'a> {
    path: &'a mut String,
}

impl Checker<'_> {
    fn float(self, value: f64) -> Result<(), Refused> {
        if value.is_finite() {
            Ok(())
        } else {
            Err(Refused::Float(value))
        }
    }

    /// Checks `value` at `segment` below the current path; the path keeps
    /// the segment only if the check failed there.
    fn nested<T: Serialize + ?Sized>(
        &mut self,
        segment: fmt::Arguments<'_>,
        value: &T,
    ) -> Result<(), Refused> {
        let len = self.path.len();
        let _ = fmt::Write::write_fmt(self.path, segment);
        let result = value.serialize(Checker { path: self.path });
        if result.is_ok() {
            self.path.truncate(len);
        }
        result
    }
}

macro_rules! fine {
    ($($method:ident($($ty:ty)?)),* $(,)?) => {
        $(fn $method(self $(, _: $ty)?) -> Result<(), Refused> { Ok(()) })*
    };
}

impl<'a> ser::Serializer for Checker<'a> {
    type Ok = ();
    type Error = Refused;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fine!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
    );

    fn serialize_f32(self, value: f32) -> Result<(), Refused> {
        self.float(f64::from(value))
    }

    fn serialize_f64(self, value: f64) -> Result<(), Refused> {
        self.float(value)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Refused> {
        value.serialize(self)
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Refused> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), Refused> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Refused> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Refused> {
        self.nested(format_args!(".{variant}"), value)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Refused> {
        Ok(Compound::new(self.path))
    }

    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, Refused> {
        Ok(Compound::new(self.path))
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Refused> {
        Ok(Compound::new(self.path))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Refused> {
        let _ = fmt::Write::write_fmt(self.path, format_args!(".{variant}"));
        Ok(Compound::new(self.path))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Refused> {
        Ok(Compound::new(self.path))
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Refused> {
        Ok(Compound::new(self.path))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Refused> {
        let _ = fmt::Write::write_fmt(self.path, format_args!(".{variant}"));
        Ok(Compound::new(self.path))
    }
}

/// A sequence, tuple, map or struct being checked: its elements by index,
/// its fields by name.
struct Compound<'a> {
    checker: Checker<'a>,
    index: usize,
}

impl<'a> Compound<'a> {
    fn new(path: &'a mut String) -> Self {
        Self {
            checker: Checker { path },
            index: 0,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refused> {
        let index = self.index;
        self.index += 1;
        self.checker.nested(format_args!("[{index}]"), value)
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), Refused> {
        self.checker.nested(format_args!(".{name}"), value)
    }
}

/// The compound serializers: elements by index, fields by name.
macro_rules! compound {
    ($($trait:ident::$method:ident => $check:ident $(($name:ident))?),* $(,)?) => {
        $(impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = Refused;
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($name: &'static str,)?
                value: &T,
            ) -> Result<(), Refused> {
                self.$check($($name,)? value)
            }
            fn end(self) -> Result<(), Refused> {
                Ok(())
            }
        })*
    };
}

compound!(
    SerializeSeq::serialize_element => element,
    SerializeTuple::serialize_element => element,
    SerializeTupleStruct::serialize_field => element,
    SerializeTupleVariant::serialize_field => element,
    SerializeStruct::serialize_field => field(name),
    SerializeStructVariant::serialize_field => field(name),
);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Refused;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), Refused> {
        // A float key is refused by serde_json itself; here only the values
        // are looked at, each under its position.
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refused> {
        self.element(value)
    }
    fn end(self) -> Result<(), Refused> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Line {
        sku: &'static str,
        price: f64,
    }

    #[derive(serde::Serialize)]
    struct Order {
        id: u32,
        lines: Vec<Line>,
        discount: Option<f32>,
    }

    #[test]
    fn finite_values_pass_as_serde_json_writes_them() {
        let order = Order {
            id: 1,
            lines: vec![Line {
                sku: "a",
                price: 2.5,
            }],
            discount: None,
        };
        assert_eq!(
            to_value(&order).unwrap(),
            serde_json::to_value(&order).unwrap()
        );
    }

    #[test]
    fn nan_and_infinities_are_refused_with_their_place() {
        for (float, shown) in [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            let order = Order {
                id: 1,
                lines: vec![
                    Line {
                        sku: "a",
                        price: 1.0,
                    },
                    Line {
                        sku: "b",
                        price: float,
                    },
                ],
                discount: None,
            };
            let error = to_value(&order).unwrap_err();
            assert_eq!(
                error,
                format!(
                    "`lines[1].price` is {shown}, which JSON cannot hold (it would be stored as null)"
                )
            );
        }
        let error = to_value(&Order {
            id: 1,
            lines: vec![],
            discount: Some(f32::NAN),
        })
        .unwrap_err();
        assert!(error.starts_with("`discount` is NaN"), "{error}");
        let error = to_value(&f64::INFINITY).unwrap_err();
        assert!(error.starts_with("it is inf"), "{error}");
    }

    #[test]
    fn what_serde_json_refuses_is_still_refused() {
        let mut map = std::collections::BTreeMap::new();
        map.insert((1u8, 2u8), 3u8);
        assert!(to_value(&map).unwrap_err().contains("key must be"));
        assert!(to_value(&u128::MAX).is_err(), "past JSON's integers");
    }
}
