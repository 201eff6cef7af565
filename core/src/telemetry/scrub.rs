//! Error messages as seawall records them: without what a URL in them may
//! carry secrets in.
//!
//! A vendor's error often names the URL it failed on (reqwest's does:
//! `error sending request for url (https://api.example.com/v1/x?api_key=…)`),
//! and API keys and tokens travel in query strings. Wherever seawall writes
//! an error's message — the end of a call, a stale answer's event, a dead
//! letter, a recorded failure — it keeps each URL's scheme, host and path and
//! drops its user info, query and fragment.

use std::borrow::Cow;

/// `message` with the user info, query and fragment of every URL in it
/// removed (a removed query or fragment shows as `?…`).
pub(crate) fn scrub(message: &str) -> Cow<'_, str> {
    if !message.contains("://") {
        return Cow::Borrowed(message);
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("://") {
        out.push_str(&rest[..at + 3]);
        rest = &rest[at + 3..];
        let end = rest
            .find(|c: char| {
                c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '<' | '>' | ']' | '`')
            })
            .unwrap_or(rest.len());
        let url = &rest[..end];
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (authority, after) = url.split_at(authority_end);
        out.push_str(
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host),
        );
        match after.find(['?', '#']) {
            Some(query) => {
                out.push_str(&after[..query]);
                out.push_str("?…");
            }
            None => out.push_str(after),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `error`'s message, scrubbed.
pub(crate) fn message(error: &dyn std::fmt::Display) -> String {
    let message = error.to_string();
    match scrub(&message) {
        Cow::Borrowed(_) => message,
        Cow::Owned(scrubbed) => scrubbed,
    }
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn queries_fragments_and_user_info_leave_every_url() {
        assert_eq!(
            scrub("error sending request for url (https://api.example.com/v1/x?api_key=SECRET)"),
            "error sending request for url (https://api.example.com/v1/x?…)"
        );
        assert_eq!(
            scrub("http://user:SECRET@127.0.0.1:8080/a#SECRET and https://b.example/ok?t=SECRET"),
            "http://127.0.0.1:8080/a?… and https://b.example/ok?…"
        );
        assert_eq!(
            scrub("at \"https://h.example?SECRET\""),
            "at \"https://h.example?…\""
        );
    }

    #[test]
    fn a_message_without_urls_is_kept_as_it_is() {
        for message in ["vendor answered 503 Service Unavailable", "", "a://", "://"] {
            assert_eq!(scrub(message), message);
        }
    }
}
