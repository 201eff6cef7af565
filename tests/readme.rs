//! The README's "Add to your Cargo.toml" block stays true: each line is
//! checked against the manifests it must agree with, so a version bump
//! that forgets the README fails here.

use std::path::Path;

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `toml` block under "## Add to your Cargo.toml", parsed.
fn readme_dependencies() -> toml::Table {
    let readme = read("README.md");
    let section = readme
        .split("\n## Add to your Cargo.toml\n")
        .nth(1)
        .expect("README has an \"Add to your Cargo.toml\" section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the section opens with a toml block");
    let manifest: toml::Table = block.parse().expect("the block is valid TOML");
    manifest["dependencies"]
        .as_table()
        .expect("a [dependencies] table")
        .clone()
}

/// `version` of a dependency given as `"1"` or `{ version = "1", .. }`.
fn version(dependency: &toml::Value) -> &str {
    match dependency {
        toml::Value::String(version) => version,
        toml::Value::Table(table) => table["version"].as_str().expect("a version"),
        other => panic!("not a dependency: {other}"),
    }
}

fn features(dependency: &toml::Value) -> Vec<&str> {
    dependency
        .get("features")
        .and_then(toml::Value::as_array)
        .map(|features| features.iter().filter_map(toml::Value::as_str).collect())
        .unwrap_or_default()
}

/// `requirement` ("1", "0.13") admits `version` ("1.2.3", "0.13.1") the
/// way cargo's caret does.
fn admits(requirement: &str, version: &str) -> bool {
    let wanted: Vec<&str> = requirement.split('.').collect();
    let have: Vec<&str> = version.split('.').collect();
    // The leading parts up to and including the first non-zero must match.
    let significant = wanted
        .iter()
        .position(|part| *part != "0")
        .map_or(wanted.len(), |at| at + 1)
        .min(wanted.len());
    wanted[..significant] == have[..significant.min(have.len())]
}

fn core_dependency(name: &str) -> toml::Value {
    let core: toml::Table = read("core/Cargo.toml").parse().expect("core's manifest");
    core["dependencies"][name].clone()
}

#[test]
fn seawalls_own_version_is_the_workspaces() {
    let dependencies = readme_dependencies();
    let workspace: toml::Table = read("Cargo.toml").parse().expect("the manifest");
    let ours = workspace["workspace"]["package"]["version"]
        .as_str()
        .expect("a workspace version");
    let wanted = version(&dependencies["seawall"]);
    assert!(
        admits(wanted, ours),
        "README asks for seawall {wanted:?}, the workspace is {ours}"
    );
}

#[test]
fn tokio_has_what_the_examples_use() {
    let dependencies = readme_dependencies();
    let tokio = &dependencies["tokio"];
    assert!(admits(version(tokio), "1.0.0"));
    // `#[tokio::main]` needs `macros` and, without a flavor, the
    // multi-thread runtime.
    let features = features(tokio);
    for needed in ["macros", "rt-multi-thread"] {
        assert!(
            features.contains(&needed),
            "README's tokio lacks {needed:?}: {features:?}"
        );
    }
    let examples = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
        .expect("the examples");
    let mains = examples
        .filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_to_string(entry.path()).is_ok_and(|text| text.contains("#[tokio::main]"))
        })
        .count();
    assert!(
        mains > 0,
        "no example uses #[tokio::main]; check what they need"
    );
}

#[test]
fn serde_thiserror_and_reqwest_match_what_seawall_depends_on() {
    let dependencies = readme_dependencies();
    for name in ["serde", "thiserror", "reqwest"] {
        let readme = version(&dependencies[name]);
        let seawalls = version(&core_dependency(name)).to_owned();
        assert_eq!(
            readme, seawalls,
            "README's {name} is {readme:?}, seawall-core depends on {seawalls:?}"
        );
    }
    assert!(features(&dependencies["serde"]).contains(&"derive"));
}

#[test]
fn the_version_check_follows_cargos_caret() {
    assert!(admits("1", "1.54.1"));
    assert!(!admits("1", "2.0.0"));
    assert!(admits("0.1", "0.1.0"));
    assert!(!admits("0.1", "0.2.0"));
    assert!(admits("0.13", "0.13.2"));
    assert!(!admits("0.13", "0.12.9"));
}
