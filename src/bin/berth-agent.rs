//! `berth-agent`: the agent. `berth agent` execs it on its own command
//! line (decision 0052): a binary of its own, so that `berth`, which every
//! command of the CLI starts, carries none of the agent's code.

use std::process::ExitCode;

use berth::agent_args::{AgentArgs, SocketArg};
use clap::{Parser, Subcommand};

// `berth agent`'s command line, as the CLI took it.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "berth's agent: `berth agent` execs it on its own command line (see `berth agent --help`)"
)]
struct AgentCommandLine {
    #[command(flatten)]
    global: SocketArg,
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Run the agent.
    Agent(AgentArgs),
}

fn main() -> ExitCode {
    let line = AgentCommandLine::parse();
    let AgentCommand::Agent(args) = line.command;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = args
        .config(line.global.socket)
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(berth::agent::run(config))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
