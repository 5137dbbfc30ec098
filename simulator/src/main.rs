//! `autoscaler-sim`: placeholder until the simulator lands (issue 4).

fn main() {
    eprintln!("autoscaler-sim: not built yet");
    std::process::exit(2);
}
