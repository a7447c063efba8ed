//! Reading an email and a password: from the terminal (the password without
//! echo) or, when stdin is not a terminal or `--password-stdin` is given,
//! one line from stdin.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::anyhow;

/// One line from stdin, without its line ending.
fn stdin_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The email from the flag, else asked on the terminal.
pub fn email(flag: Option<&str>) -> anyhow::Result<String> {
    if let Some(e) = flag {
        return Ok(e.to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err(anyhow!("give --email (stdin is not a terminal)"));
    }
    eprint!("Email: ");
    std::io::stderr().flush()?;
    stdin_line()
}

/// The password: a line of stdin, or typed without echo on a terminal.
pub fn password(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if from_stdin || !stdin.is_terminal() {
        return stdin_line();
    }
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let line = without_echo(stdin_line);
    eprintln!();
    line
}

/// Runs `f` with terminal echo off (restored afterwards).
fn without_echo<T>(f: impl FnOnce() -> T) -> T {
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal fd.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut old) } != 0 {
        return f();
    }
    let mut quiet = old;
    quiet.c_lflag &= !libc::ECHO;
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    let out = f();
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
    out
}
