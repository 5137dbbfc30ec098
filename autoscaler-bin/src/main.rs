//! `autoscaler`: the controller binary.

use anyhow::Result;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if autoscaler_bin::event_infra::requested(&args) {
        return event_infra(&args);
    }
    let flags = match autoscaler_bin::flags::parse(&args) {
        Ok(f) => f,
        Err(e) => {
            if let Some(c) = e.downcast_ref::<clap::Error>() {
                c.exit();
            }
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    autoscaler_bin::install_crypto_provider();
    autoscaler_bin::logging::init(&flags);
    tracing::info!(?flags, "autoscaler starting");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(autoscaler_bin::controller::run(flags))
}

/// `autoscaler event-infra ...`: a one-shot command, then exit.
fn event_infra(args: &[String]) -> Result<()> {
    let parsed = autoscaler_bin::event_infra::parse(args).unwrap_or_else(|e| e.exit());
    autoscaler_bin::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = rt.block_on(autoscaler_bin::event_infra::run(&parsed))?;
    std::process::exit(code)
}
