//! burn-train's dashboard appears when stdout is a terminal: this test runs
//! a loop's [`Progress`] in a child process whose stdin and stdout are a
//! pseudo-terminal and reads what it draws; without `enable_dashboard` a loop
//! prints plain lines.

#![cfg(all(feature = "dashboard", target_os = "linux"))]

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};
use virtex_train::progress::{Progress, enable_dashboard};

/// Set in the child: the file whose appearance ends its loop.
const CHILD: &str = "VIRTEX_DASHBOARD_CHILD";

/// What the dashboard draws of [`drive_a_loop`]'s readings.
const DRAWN: [&str; 3] = ["loss", "images/s", "Iteration"];

/// A short loop: ten iterations with their readings, a validation; then,
/// the dashboard redrawing on its own, the end once `release` exists (the
/// test creates it when it has seen the readings drawn).
fn drive_a_loop(release: &Path) {
    let mut progress = Progress::new("iteration", 0, 10, 5);
    for done in 1..=10 {
        let loss = 10.0 / done as f64;
        progress.step(
            done,
            &[
                ("loss", loss),
                ("lr", 1e-3),
                ("images/s", 42.0 + done as f64),
            ],
        );
    }
    progress.validation(
        10,
        &[("loss", 1.5)],
        &["image 7: an emoji of a face".into()],
    );
    // Bounded only so that a dashboard that never draws fails the test
    // (its screen lacks the readings) instead of hanging it.
    let given_up = Instant::now() + Duration::from_secs(120);
    while !release.exists() && Instant::now() < given_up {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!progress.stop_requested());
    progress.finish();
}

#[test]
#[ignore = "the dashboard's loop: the_dashboard_draws_on_a_terminal runs it in a child process"]
fn dashboard_child() {
    if let Some(release) = std::env::var_os(CHILD) {
        enable_dashboard();
        drive_a_loop(&PathBuf::from(release));
    }
}

#[test]
fn the_dashboard_draws_on_a_terminal() {
    let master: OwnedFd = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    tcsetwinsize(
        &master,
        Winsize {
            ws_row: 40,
            ws_col: 140,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
    let slave_path = ptsname(&master, Vec::new()).unwrap();
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .open(slave_path.to_str().unwrap())
        .unwrap();
    let release = std::env::temp_dir().join(format!("virtex-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_file(&release);
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "dashboard_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &release)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the terminal until the child is gone (the master then reads EIO),
    // releasing the child once the readings have been drawn.
    let mut master = File::from(master);
    let released = release.clone();
    let reader = std::thread::spawn(move || {
        let mut screen = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = master.read(&mut buffer) {
            if n == 0 {
                break;
            }
            screen.extend_from_slice(&buffer[..n]);
            let drawn = String::from_utf8_lossy(&screen);
            if !released.exists() && DRAWN.iter().all(|text| drawn.contains(text)) {
                File::create(&released).unwrap();
            }
        }
        String::from_utf8_lossy(&screen).into_owned()
    });
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the child failed: {stderr}");
    let screen = reader.join().unwrap();
    // The alternate screen is entered and left, the metrics are drawn, and
    // no plain progress line went to stderr.
    assert!(
        screen.contains("\x1b[?1049h"),
        "no alternate screen: {screen:?}"
    );
    assert!(screen.contains("\x1b[?1049l"), "terminal not restored");
    for drawn in DRAWN {
        assert!(screen.contains(drawn), "{drawn:?} not drawn: {screen:?}");
    }
    assert!(!stderr.contains("iteration 5/10"), "{stderr}");
    std::fs::remove_file(release).unwrap();
}

#[test]
fn the_dashboard_is_opt_in() {
    // Not enabled in this process: plain lines, whatever stdout is.
    let progress = Progress::new("iteration", 0, 10, 5);
    assert!(!progress.is_dashboard());
}
