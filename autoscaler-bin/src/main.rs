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
    autoscaler_bin::logging::init(&flags);
    tracing::info!(?flags, "autoscaler starting");
    Ok(())
}
