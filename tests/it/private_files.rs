//! The data dir and every file in it are private to the daemon's user
//! whatever the umask: control.redb holds the JWT signing secret.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

use crate::common::admin::admin_section;
use crate::common::{BIN, Daemon};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn with_umask(cmd: &mut Command, umask: libc::mode_t) {
    // SAFETY: umask only changes the forked child's file mode mask.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(umask);
            Ok(())
        });
    }
}

fn start_with_umask(data: &Path, umask: libc::mode_t) -> Daemon {
    Daemon::start_with(data, &admin_section(""), move |cmd| with_umask(cmd, umask))
}

#[test]
fn under_umask_022_the_data_dir_is_0700_and_its_files_0600() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");
    // The first command to touch a data dir creates it (here: an offline key).
    let mut create = Command::new(BIN);
    create.args(["apikeys", "create", "--name", "k", "--data-dir"]).arg(&data);
    with_umask(&mut create, 0o022);
    assert!(create.output().unwrap().status.success());
    assert_eq!(mode(&data), 0o700, "data dir");
    assert_eq!(mode(&data.join("control.redb")), 0o600);
    let daemon = start_with_umask(&data, 0o022);
    // The admin API writes the setup token once its state is built.
    let token = data.join("setup-token");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !token.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for file in ["control.redb", "events.redb", "setup-token"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    assert!(!daemon.log_text().contains("readable by other users"), "{}", daemon.log_text());
    assert!(daemon.stop().success());
}

#[test]
fn a_data_dir_others_can_read_is_warned_about_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = start_with_umask(&data, 0o022);
    let log = daemon.log_text();
    assert!(log.contains("WARN") && log.contains("readable by other users") && log.contains("0755"), "{log}");
    assert_eq!(mode(&data.join("control.redb")), 0o600, "new files are private even in an open dir");
    assert!(daemon.stop().success());
}
