use clap::Parser;
use convene_server::config::Config;

#[tokio::main]
async fn main() {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .init();
    let server = match convene_server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("convene: {e}");
            std::process::exit(1);
        }
    };
    // Tests and scripts read this line to find the server.
    println!("Convene is running at {}/", server.url);
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
}
