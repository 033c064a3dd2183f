//! The `ckpt-opt` binary: parse, run, print one line per error chain, exit with a code.

use clap::Parser;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Past a file-size limit the kernel sends SIGXFSZ, which would kill us mid-write; ignored,
    // the write fails with EFBIG instead and is reported like a full disk, temp files removed.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = match ckpt_opt::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            eprintln!("ckpt-opt: {}", one_line(&err.render().to_string()));
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match ckpt_opt::cli::run(cli, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut line = format!("ckpt-opt: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !line.contains(&text) {
                    line.push_str(": ");
                    line.push_str(&text);
                }
                source = cause.source();
            }
            eprintln!("{line}");
            ExitCode::from(err.exit_code() as u8)
        }
    }
}

/// Folds clap's multi-line usage error into one line, dropping its usage and help hints.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ")
}
