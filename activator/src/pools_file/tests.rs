use super::*;
use crate::policy::{PoolRecord, SlotRecord, SlotRole};
use zz_protocol::{AppId, ExecutionId};

fn record() -> PoolsRecord {
    let slot = |id, role| SlotRecord {
        id: ExecutionId(id),
        role,
    };
    PoolsRecord {
        apps: vec![
            PoolRecord {
                app: AppId(0),
                epoch: 7,
                slots: vec![
                    slot(0, SlotRole::Active),
                    slot(1, SlotRole::Standby),
                    slot(2, SlotRole::Active),
                    slot(3, SlotRole::Spare),
                ],
                woken: vec![ExecutionId(2)],
            },
            PoolRecord {
                app: AppId(1),
                epoch: 0,
                slots: vec![slot(4, SlotRole::Active), slot(5, SlotRole::Active)],
                woken: vec![],
            },
        ],
    }
}

/// A directory of its own under the system's temporary one, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("zz-pools-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_saved_record_loads_back_and_a_missing_file_is_none() {
    let dir = TempDir::new("round-trip");
    let mut file = PoolsFile::new(dir.0.join("activator.pools"));
    assert!(file.load().unwrap().is_none(), "no file: a first start");
    file.save(&record()).unwrap();
    assert_eq!(file.load().unwrap(), Some(record()));
    let mut changed = record();
    changed.apps[0].epoch = 8;
    file.save(&changed).unwrap();
    assert_eq!(file.load().unwrap(), Some(changed));
    let left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
    assert_eq!(left.len(), 1, "no temporary file is left behind");
}

#[test]
fn a_torn_file_is_an_error_naming_it() {
    let path = Path::new("state/activator.pools");
    let bytes = encode(&record());
    for cut in [0, 5, bytes.len() / 3, bytes.len() - 3] {
        let error = decode(path, &bytes[..cut]).unwrap_err();
        assert!(
            matches!(error, PoolsFileError::Damaged { .. }),
            "{cut}: {error}"
        );
        let text = error.to_string();
        assert!(text.starts_with("state/activator.pools: "), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }
}

#[test]
fn an_altered_body_fails_its_checksum() {
    let bytes = encode(&record());
    let text = String::from_utf8(bytes).unwrap();
    // A valid record still, but not the one written: the checksum tells.
    let altered = text.replace("\"epoch\": 7", "\"epoch\": 9");
    assert_ne!(altered, text);
    let error = decode(Path::new("p"), altered.as_bytes()).unwrap_err();
    assert!(error.to_string().contains("checksum"), "{error}");
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let inputs: [&[u8]; 6] = [
        b"",
        b"\n",
        b"{\"apps\": []}\n",
        b"zz-activator-pools 1\n{}",
        b"zz-activator-pools one 00\n{}",
        &[0xff, 0xfe, b'\n', 0x00],
    ];
    for input in inputs {
        let error = decode(Path::new("p"), input).unwrap_err();
        assert!(matches!(error, PoolsFileError::Damaged { .. }), "{error}");
    }
    // The right checksum over a body that is not a record.
    let body = b"[1, 2]";
    let mut bytes = format!("{MAGIC} {POOLS_FORMAT} {}\n", hex(&Sha256::digest(body)));
    bytes.push_str(std::str::from_utf8(body).unwrap());
    let error = decode(Path::new("p"), bytes.as_bytes()).unwrap_err();
    assert!(error.to_string().contains("bad JSON"), "{error}");
}

#[test]
fn another_format_is_an_error_naming_both_formats() {
    let text = String::from_utf8(encode(&record())).unwrap();
    let older = text.replacen(
        &format!("{MAGIC} {POOLS_FORMAT} "),
        &format!("{MAGIC} 0 "),
        1,
    );
    let error = decode(Path::new("p"), older.as_bytes()).unwrap_err();
    assert!(
        matches!(error, PoolsFileError::Format { found: 0, .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("format 0, this zz reads format 1"),
        "{error}"
    );
}
