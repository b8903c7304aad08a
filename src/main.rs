use std::path::PathBuf;
use std::process::ExitCode;

use berth::agent_args::{AgentArgs, SocketArg};
use berth::cli;
use berth::config::AgentConfig;
use clap::{CommandFactory, Parser, Subcommand};

/// berth: a per-host container agent and its command line.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    after_help = "Exit status: 0 ok (also when the reader of the output went away, as in \
                  `berth ps | head -1`); 1 an error the agent reported or could not be reached; \
                  2 a usage error (a bad flag or value, refused before asking the agent). \
                  `run` and `wait` exit with the container's code (128+n for a signal n)."
)]
struct Cli {
    #[command(flatten)]
    global: SocketArg,
    #[command(subcommand)]
    command: TopCommand,
}

#[derive(Debug, Subcommand)]
enum TopCommand {
    /// Run the agent.
    Agent(AgentArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (berth.1 and one per command) into DIR.
    #[command(hide = true)]
    Man {
        /// The directory, made if missing.
        dir: PathBuf,
    },
    /// Bearer tokens for the remote API (`[[api.tokens]]`).
    #[command(subcommand)]
    Token(TokenCommand),
    #[command(flatten)]
    Client(cli::Command),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Read a token on stdin and print its `[[api.tokens]]` config entry
    /// (a salted SHA-256 of it, never the token itself).
    Hash {
        /// The token holder's name, shown in audit lines.
        #[arg(long)]
        name: String,
        /// The role the token grants.
        #[arg(long, value_parser = ["operator", "read-only"], default_value = "read-only")]
        role: String,
    },
}

/// The agent's binary's name.
const AGENT_BINARY: &str = "berth-agent";

/// Where the agent's binary is: beside this one (a build tree, a
/// tarball), else where the RPM puts it, `../libexec/berth` from this
/// one's dir (`/usr/bin` → `/usr/libexec/berth`).
fn agent_binary() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(agent_binary_for(
        exe.parent().unwrap_or(std::path::Path::new("/")),
    ))
}

/// [`agent_binary`] for a `berth` in `dir`.
fn agent_binary_for(dir: &std::path::Path) -> PathBuf {
    let beside = dir.join(AGENT_BINARY);
    if beside.is_file() {
        return beside;
    }
    dir.join("../libexec/berth").join(AGENT_BINARY)
}

/// Replaces this process with `berth-agent` on the same arguments (it
/// parses `berth agent`'s command line); returns only if that fails.
fn exec_agent() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let name = args.next().unwrap_or_else(|| "berth".into());
    let error = match agent_binary() {
        // The same pid, name and arguments: to `ps` and systemd it is
        // still `berth agent`.
        Ok(path) => {
            let error = std::process::Command::new(&path)
                .arg0(name)
                .args(args)
                .exec();
            format!("exec {}: {error}", path.display())
        }
        Err(e) => format!("find {AGENT_BINARY}: {e}"),
    };
    eprintln!("berth agent: {error}");
    ExitCode::FAILURE
}

/// Writes `berth.1` and `berth-<command>.1` for every visible command.
fn write_man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let command = Cli::command();
    let write = |name: String, page: clap::Command| -> std::io::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)
    };
    for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
        let name = format!("berth-{}", sub.get_name());
        write(name.clone(), sub.clone().name(name))?;
    }
    write("berth".to_string(), command)
}

/// The command line with `run` its only command: `berth run`, the command
/// whose start a user waits on most, is parsed against this tree first.
/// clap builds every command's arguments before it parses anything: for
/// the whole tree, 0.15 ms of CPU and 83 page faults of the CLI's start
/// (decision 0052).
#[derive(Debug, Parser)]
#[command(name = "berth")]
struct RunOnly {
    #[command(flatten)]
    global: SocketArg,
    #[command(subcommand)]
    command: RunCommand,
}

#[derive(Debug, Subcommand)]
enum RunCommand {
    Run(Box<cli::RunArgs>),
}

/// Parses `args` (the program's name first): a `run` against [`RunOnly`],
/// anything that tree does not take (another command, help, version, a
/// mistake) against the whole tree, which then gives the answer and any
/// message, exactly as without the first try.
fn parse_from(args: Vec<std::ffi::OsString>) -> Cli {
    match RunOnly::try_parse_from(&args) {
        Ok(RunOnly {
            global,
            command: RunCommand::Run(args),
        }) => Cli {
            global,
            command: TopCommand::Client(cli::Command::Run(args)),
        },
        Err(_) => Cli::parse_from(args),
    }
}

/// A command's first allocations come from an arena (decision 0055).
#[global_allocator]
static ALLOCATOR: cli::arena::Arena = cli::arena::Arena::new();

/// How much of the arena and of the stack a command maps up front, in one
/// call each (decision 0060): a `berth run` writes 47 pages of the arena and
/// 27 of the stack, each a page fault otherwise. The stack's part must lie
/// in the mapping the kernel made at exec, 128 KiB below the arguments, of
/// which `main`'s frame already uses some: asked for 28 pages the call was
/// refused whole (decision 0061).
const PREFAULT_ARENA: usize = 48 << 12;
const PREFAULT_STACK: usize = 24 << 12;

fn main() -> ExitCode {
    berth_sys::launch_marks::mark("cli: main");
    ALLOCATOR.prefault(PREFAULT_ARENA);
    // Best effort, as the arena's.
    let _ = berth_sys::prefault::stack(PREFAULT_STACK);
    let cli = parse_from(std::env::args_os().collect());
    match cli.command {
        // Parsed here for the help and to refuse a bad flag at once; run
        // by `berth-agent`, so that this binary, which every command
        // starts, carries none of the agent's code (decision 0052).
        TopCommand::Agent(_) => exec_agent(),
        TopCommand::Completion { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "berth", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        TopCommand::Man { dir } => match write_man_pages(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: write man pages to {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
        TopCommand::Token(TokenCommand::Hash { name, role }) => {
            use berth::api::tokens::{config_entry, TokenRole};
            let role = match role.as_str() {
                "operator" => TokenRole::Operator,
                _ => TokenRole::ReadOnly,
            };
            match config_entry(&mut std::io::stdin().lock(), &name, role) {
                Ok(entry) => {
                    print!("{entry}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("berth: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        TopCommand::Client(command) => {
            let socket = (cli.global.socket).unwrap_or_else(|| AgentConfig::default().socket);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            match runtime.block_on(cli::run(socket, command)) {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(failure) => {
                    // Empty when the output's reader went away: nothing to say.
                    if !failure.message.is_empty() {
                        use std::io::Write;
                        let _ = writeln!(std::io::stderr(), "berth: {}", failure.message);
                    }
                    // 0 only for a closed output (decision 0012).
                    ExitCode::from(failure.code.clamp(0, 255) as u8)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<std::ffi::OsString> {
        line.split(' ').map(Into::into).collect()
    }

    #[test]
    fn a_run_parses_alone_as_in_the_whole_tree() {
        for line in [
            "berth run --rootfs /r -- /bin/true",
            "berth --socket /s.sock run --rm -e A=1 -l k=v alpine:3 echo hi",
            "berth run --socket /s.sock -it --cpus 0.5 --memory 64m alpine -- sh -c x",
            "berth run -d --name web --restart on-failure:3 img",
            "berth run img -- --rootfs",
            "berth run",
        ] {
            let alone = RunOnly::try_parse_from(words(line));
            let whole = Cli::try_parse_from(words(line));
            assert!(alone.is_ok(), "{line}: {alone:?}");
            let alone = format!("{:?}", parse_from(words(line)));
            assert_eq!(alone, format!("{:?}", whole.unwrap()), "{line}");
            assert!(alone.contains("Client(Run("), "{line}: {alone}");
        }
    }

    #[test]
    fn the_agent_binary_beside_else_in_libexec() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("usr/bin");
        let libexec = root.path().join("usr/libexec/berth");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&libexec).unwrap();
        std::fs::write(libexec.join(AGENT_BINARY), b"").unwrap();
        // As the RPM installs it.
        let found = agent_binary_for(&bin);
        assert_eq!(
            found.canonicalize().unwrap(),
            libexec.join(AGENT_BINARY).canonicalize().unwrap()
        );
        // A build tree or a tarball: beside `berth`.
        std::fs::write(bin.join(AGENT_BINARY), b"").unwrap();
        assert_eq!(agent_binary_for(&bin), bin.join(AGENT_BINARY));
    }

    #[test]
    fn what_run_alone_does_not_take_goes_to_the_whole_tree() {
        for line in [
            "berth ps -a",
            "berth --version",
            "berth run --help",
            "berth run --no-such-flag img",
            "berth agent --config /c.toml",
        ] {
            assert!(RunOnly::try_parse_from(words(line)).is_err(), "{line}");
        }
        let cli = parse_from(words("berth ps -a"));
        assert!(format!("{cli:?}").contains("Ps {"), "{cli:?}");
        let cli = parse_from(words("berth agent --config /c.toml"));
        assert!(matches!(cli.command, TopCommand::Agent(_)), "{cli:?}");
    }
}
