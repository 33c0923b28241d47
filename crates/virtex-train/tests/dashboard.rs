//! burn-train's dashboard appears when stdout is a terminal: this test runs
//! a loop's [`Progress`] in a child process whose stdin and stdout are a
//! pseudo-terminal and reads what it draws; without `enable_dashboard` a loop
//! prints plain lines.

#![cfg(all(feature = "dashboard", target_os = "linux"))]

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};
use virtex_train::progress::{Progress, enable_dashboard};

/// Set in the child: it drives the dashboard instead of spawning.
const CHILD: &str = "VIRTEX_DASHBOARD_CHILD";

/// A short loop: ten iterations with their readings, a validation, the end.
fn drive_a_loop() {
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
        std::thread::sleep(Duration::from_millis(60));
    }
    progress.validation(
        10,
        &[("loss", 1.5)],
        &["image 7: an emoji of a face".into()],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!progress.stop_requested());
    progress.finish();
}

#[test]
fn dashboard_child() {
    // Only meaningful as the child of the test below.
    if std::env::var_os(CHILD).is_some() {
        enable_dashboard();
        drive_a_loop();
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
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "dashboard_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the terminal until the child is gone (the master then reads EIO).
    let mut master = File::from(master);
    let reader = std::thread::spawn(move || {
        let mut screen = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = master.read(&mut buffer) {
            if n == 0 {
                break;
            }
            screen.extend_from_slice(&buffer[..n]);
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
    for drawn in ["loss", "images/s", "Iteration"] {
        assert!(screen.contains(drawn), "{drawn:?} not drawn: {screen:?}");
    }
    assert!(!stderr.contains("iteration 5/10"), "{stderr}");
}

#[test]
fn the_dashboard_is_opt_in() {
    // Not enabled in this process: plain lines, whatever stdout is.
    let progress = Progress::new("iteration", 0, 10, 5);
    assert!(!progress.is_dashboard());
}
