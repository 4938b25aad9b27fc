use std::process::ExitCode;

use clap::Parser;
use convene_server::config::{AuditCommand, Cli, Command, ExportFormat};
use convene_storage::{audit, Storage};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Audit(cmd)) = cli.command {
        return audit_command(&cli.config.data_dir, cmd);
    }
    let config = cli.config;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .init();
    let server = match convene_server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("convene: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Tests and scripts read this line to find the server.
    println!("Convene is running at {}/", server.url);
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

fn audit_command(data_dir: &std::path::Path, cmd: AuditCommand) -> ExitCode {
    let storage = match Storage::open(data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("convene: data folder {}: {e}", data_dir.display());
            return ExitCode::FAILURE;
        }
    };
    match cmd {
        AuditCommand::Export { meeting, format } => {
            let out = storage
                .audit_records(meeting.as_deref())
                .and_then(|records| match format {
                    ExportFormat::Jsonl => Ok(audit::to_jsonl(&records)),
                    ExportFormat::Csv => audit::to_csv(&records),
                });
            match out {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("convene: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        AuditCommand::Verify => match storage.verify_audit() {
            Ok(Ok(head)) => {
                println!(
                    "audit log intact: {} rows, last hash {}",
                    head.rows, head.hash
                );
                ExitCode::SUCCESS
            }
            Ok(Err(broken)) => {
                eprintln!("audit log BROKEN: {broken}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("convene: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
