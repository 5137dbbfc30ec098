//! `autoscaler`: the controller binary.

use anyhow::Result;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
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
