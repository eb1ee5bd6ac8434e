//! Paths are bytes, not text (FORMAT.md 8.3): every verb that takes a PATH
//! inside an archive takes it as the shell passes it, so a name that is not
//! UTF-8 can be read, listed and extracted by that name.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use common::*;

#[test]
fn a_name_that_is_not_utf8_is_found_by_cat_list_and_extract() {
    let d = temp_dir();
    let src = d.path().join("src");
    let name = OsStr::from_bytes(b"caf\xe9");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    std::fs::write(src.join("docs").join(name), b"latin-1 name").unwrap();
    std::fs::write(src.join("docs/other"), b"another").unwrap();
    let archive = d.path().join("a.strata");
    run_ok(&["create", path_str(&archive), "--files", &format!("t={}", path_str(&src)), "-q"]);
    let mut wanted = b"./docs/".to_vec();
    wanted.extend_from_slice(name.as_bytes());
    let wanted = OsStr::from_bytes(&wanted);

    let out = strata().arg("cat").arg(&archive).arg(wanted).output().unwrap();
    assert!(out.status.success(), "cat: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"latin-1 name");

    let out = strata().arg("list").arg(&archive).arg(wanted).arg("--json").output().unwrap();
    assert!(out.status.success(), "list: {}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> =
        listed["sections"][0]["entries"].as_array().unwrap().iter().map(|e| e["path_hex"].as_str().unwrap()).collect();
    assert_eq!(paths, ["646f63732f636166e9"], "the file asked for, nothing else (as `tar -t` lists a member)");

    let dest = d.path().join("out");
    let out = strata().arg("extract").arg(&archive).arg(&dest).arg(wanted).output().unwrap();
    assert!(out.status.success(), "extract: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(dest.join("docs").join(name)).unwrap(), b"latin-1 name");
    assert!(!dest.join("docs/other").exists(), "only the path asked for");

    // A path that is not there is an error naming it, escaped, and nothing on stdout.
    let out = strata().arg("cat").arg(&archive).arg(OsStr::from_bytes(b"docs/caf\xe8")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("docs/caf"), "{}", String::from_utf8_lossy(&out.stderr));
}
