//! Launching a container through berth's HTTP API, from a client with no
//! dependencies: `POST /v1/containers`, then `GET
//! /v1/containers/{id}/wait`, each on a new connection to the agent's unix
//! socket. `benches/launch.sh` times its API case with it as well as with
//! its python (decision 0061): the interpreter's own ~0.3 ms a request is
//! then not counted as the agent's.
//!
//! ```text
//! cargo build --release --example api_launch
//! target/release/examples/api_launch /run/berth/berth.sock
//! ```
//!
//! Reads one `ID ROOTFS` line per launch on stdin; for each, launches
//! `/bin/true` in ROOTFS as container ID, waits for its end and prints
//! `MICROSECONDS EXIT_CODE` (from before the create's connect to the wait's
//! last byte). A refused request or an unreadable answer ends it with a
//! message and exit code 1.

use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let Some(socket) = std::env::args().nth(1) else {
        eprintln!("usage: api_launch SOCKET (then \"ID ROOTFS\" lines on stdin)");
        return ExitCode::from(2);
    };
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = match line {
            Ok(line) => line,
            Err(e) => return fail(&format!("stdin: {e}")),
        };
        let Some((id, rootfs)) = line.split_once(' ') else {
            return fail(&format!("not \"ID ROOTFS\": {line:?}"));
        };
        match launch(&socket, id, rootfs) {
            Ok((micros, code)) => {
                let mut out = stdout.lock();
                if writeln!(out, "{micros} {code}")
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    return ExitCode::SUCCESS;
                }
            }
            Err(e) => return fail(&e),
        }
    }
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("api_launch: {message}");
    ExitCode::FAILURE
}

/// One launch: the time it took in µs and the exit code the wait told
/// (`null` if none).
fn launch(socket: &str, id: &str, rootfs: &str) -> Result<(u128, String), String> {
    let started = Instant::now();
    let body = format!(
        r#"{{"id":{},"command":["/bin/true"],"rootfs":{}}}"#,
        json_string(id),
        json_string(rootfs)
    );
    let create = format!(
        "POST /v1/containers HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    request(socket, &create, "201")?;
    let wait = format!(
        "GET /v1/containers/{id}/wait HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    );
    let ended = request(socket, &wait, "200")?;
    let micros = started.elapsed().as_micros();
    Ok((micros, exit_code(&ended)))
}

/// Sends `request` on a new connection and reads the answer to its end;
/// its body if the status is `status`.
fn request(socket: &str, request: &str, status: &str) -> Result<String, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect {socket}: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read the answer: {e}"))?;
    let code = answer.split(' ').nth(1).unwrap_or("");
    if code != status {
        let head = answer.lines().next().unwrap_or("(nothing)");
        return Err(format!("{}: {head}", request.lines().next().unwrap_or("")));
    }
    Ok(answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string()))
}

/// `s` as a JSON string.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `exit_code` field of the wait's JSON answer, as written.
fn exit_code(body: &str) -> String {
    body.split_once("\"exit_code\":")
        .map(|(_, rest)| {
            rest.trim_start()
                .split([',', '}'])
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "null".into())
}
