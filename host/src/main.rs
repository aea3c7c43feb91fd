//! `labctl`: the command line. Parses arguments (see [`cli`]), resolves them against the lab,
//! runs the verb, and maps failures to the documented exit codes (0 ok, 1 failed, 2 bad input).

mod bench;
mod boards;
mod bringup;
mod bus;
mod cli;
mod clock;
mod cmd;
mod console;
mod control;

mod error;
mod lab;
mod model;
mod mqtt;
mod plugins;
mod quarantine;
mod rails;
mod records;
mod relay;
mod report;
mod results;
mod rig;
mod run;
mod sample;
mod sense;
mod serve;
mod shutdown;
mod store;
mod units;
mod window;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ConfigCmd};

use crate::error::{BadInput, Failed};

fn main() -> ExitCode {
    // One lab thread per board and sensor: glibc would give each its own malloc arena (MBs of
    // mostly idle memory on a Pi); two arenas are plenty for this traffic.
    #[cfg(target_env = "gnu")]
    // SAFETY: called before any other thread exists; only sets a tuning parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LABCTL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rumqttd=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(b) = e.downcast_ref::<BadInput>() {
                eprintln!("error: {b}");
                ExitCode::from(2)
            } else if e.downcast_ref::<Failed>().is_some() {
                eprintln!("{e}");
                ExitCode::from(1)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plugins { json } => {
            let lab = lab::load_optional(&cli.lab)?;
            plugins::cmd_plugins(lab.as_ref(), json)
        }
        Command::Config {
            cmd: ConfigCmd::Check { file, json },
        } => cmd::config_check::cmd(&file, json),
        Command::Power {
            board,
            action,
            off_time,
            json,
        } => cmd::power::cmd(&cli.lab, &board, action, off_time, json),
        Command::Boards { json, action } => cmd::boards::cmd(&cli.lab, json, action),
        Command::Discover { json } => cmd::discover::cmd(json),
        Command::Flash {
            board,
            model,
            dry_run,
        } => cmd::flash::cmd(&cli.lab, &board, model.as_deref(), dry_run),
        Command::Reset { board, dry_run } => cmd::reset::cmd(&cli.lab, &board, dry_run),
        Command::Console { board, model } => cmd::console::cmd(&cli.lab, &board, model.as_deref()),
        Command::Sense(args) => sense::cmd_sense(&cli.lab, args),
        Command::Bench { what } => bench::cmd_bench(&cli.lab, what),
        Command::Model { cmd } => {
            let lab = lab::load_optional(&cli.lab)?;
            model::cmd_model(cmd, lab.as_ref())
        }
        Command::Run(args) => run::cmd_run(&cli.lab, args),
        Command::Serve => serve::cmd_serve(&cli.lab),
        Command::Query { sql, db, format } => results::cmd_query(&cli.lab, db, &sql, &format),
        Command::Verify { db, json } => cmd::verify::cmd(&cli.lab, db, json),
        Command::Compare {
            recommend: true,
            db,
            tokens_per_hour,
            battery_mah,
            battery_v,
            format,
            ..
        } => results::cmd_recommend(
            &cli.lab,
            db,
            results::Duty {
                tokens_per_hour,
                battery_mah,
                battery_v,
            },
            format == "json",
        ),
        Command::Compare {
            db,
            by,
            metrics,
            format,
            ..
        } => results::cmd_compare(&cli.lab, db, &by, &metrics, &format),
        Command::Report {
            db,
            run,
            all,
            format,
            output,
            ..
        } => {
            let sel = match (run, all) {
                (Some(id), _) => report::Select::Run(id),
                (None, true) => report::Select::All,
                (None, false) => report::Select::LastBatch,
            };
            report::cmd_report(&cli.lab, db, sel, &format, &output)
        }
        Command::Export { db, format, output } => {
            results::cmd_export(&cli.lab, db, &format, &output)
        }
    }
}
