//! e2e harness: one real control plane (tests/e2e/controlplane.sh) per test binary,
//! shared by serial tests, and the `autoscaler` binary started against it.
//!
//! The control plane is started once (`build`, then `up DIR`) and always stopped: a
//! `Drop` guard runs `down DIR` when a [`ControlPlane`] is dropped, and, because the
//! shared one lives in a `static` (never dropped), a watchdog shell started with it runs
//! `down DIR` as soon as the test process exits, however it exits. If the control plane
//! cannot start, the test panics with the script's output and log tails: never skipped.

#![allow(dead_code, missing_docs)]

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Label of the static provider's nodes (autoscaler_bin::kwok::GROUP_LABEL).
pub const GROUP_LABEL: &str = autoscaler_bin::kwok::GROUP_LABEL;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn script() -> PathBuf {
    repo_root().join("tests/e2e/controlplane.sh")
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A running control plane; `down` on drop.
pub struct ControlPlane {
    /// Its directory.
    pub dir: PathBuf,
    /// `DIR/kubeconfig`.
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    /// `build` + `up` in a fresh directory; panics (with the log tails) on failure.
    pub fn start() -> ControlPlane {
        let started = Instant::now();
        let build = Command::new(script())
            .arg("build")
            .stdin(Stdio::null())
            .output()
            .expect("running tests/e2e/controlplane.sh build");
        assert!(
            build.status.success(),
            "tests/e2e/controlplane.sh build failed (no control plane, e2e tests cannot run):\n{}\n{}",
            String::from_utf8_lossy(&build.stdout),
            String::from_utf8_lossy(&build.stderr)
        );
        let dir = std::env::temp_dir().join(format!("autoscaler-bin-e2e-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cp = ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            dir,
        };
        let up = Command::new(script())
            .arg("up")
            .arg(&cp.dir)
            .stdin(Stdio::null())
            .output()
            .expect("running tests/e2e/controlplane.sh up");
        if !up.status.success() {
            let mut logs = String::new();
            for name in [
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kwok",
            ] {
                let p = cp.dir.join("logs").join(format!("{name}.log"));
                logs += &format!("--- {} ---\n{}\n", p.display(), tail(&p, 20));
            }
            panic!(
                "the e2e control plane did not start (tests/e2e/controlplane.sh up {}):\nstdout:\n{}\nstderr:\n{}\n{logs}",
                cp.dir.display(),
                String::from_utf8_lossy(&up.stdout),
                String::from_utf8_lossy(&up.stderr)
            );
        }
        eprintln!(
            "e2e: control plane up in {:.1}s at {}",
            started.elapsed().as_secs_f64(),
            cp.dir.display()
        );
        cp
    }

    /// Runs `down DIR` when this process exits (for a control plane kept in a static).
    /// The watchdog outlives us on purpose, so it is never waited for.
    #[allow(clippy::zombie_processes)]
    fn watchdog(&self) {
        let log = std::fs::File::create(self.dir.join("watchdog.log")).ok();
        let cmd = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; exec '{script}' down '{dir}'",
            pid = std::process::id(),
            script = script().display(),
            dir = self.dir.display()
        );
        let mut c = Command::new("sh");
        c.arg("-c").arg(cmd).stdin(Stdio::null());
        match log {
            Some(f) => {
                let f2 = f.try_clone().expect("log handle");
                c.stdout(f).stderr(f2);
            }
            None => {
                c.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        c.spawn().expect("starting the control plane watchdog");
    }

    /// A client for it.
    pub async fn client(&self) -> Client {
        autoscaler_bin::install_crypto_provider();
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("kube config");
        Client::try_from(cfg).expect("kube client")
    }
}

/// The control plane's own processes stopped by [`ControlPlane::stop_apiserver`], with
/// their command lines, to start them again as they were.
pub struct StoppedApiserver {
    /// (name in the pids file, command line), in the order they were stopped.
    stopped_procs: Vec<(String, Vec<String>)>,
    stopped: Instant,
}

/// What an outage of the control plane stops: the controllers first (as their host
/// goes down with the API server's) and the API server last. etcd and the nodes (KWOK,
/// standing in for the kubelets) keep running.
const OUTAGE_PROCS: [&str; 3] = [
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
];

impl ControlPlane {
    /// The pid of this control plane's `name` (the last one the pids file records) and
    /// its command line; panics when it is not running.
    fn running(&self, name: &str) -> (String, Vec<String>) {
        let pids = std::fs::read_to_string(self.dir.join("pids")).expect("the pids file");
        let pid = pids
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(n, _)| *n == name)
            .map(|(_, pid)| pid.trim().to_string())
            .next_back()
            .unwrap_or_else(|| panic!("{name} in the pids file"));
        let raw = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_else(|e| panic!("{name} (pid {pid}) running: {e}"));
        let cmdline: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert!(
            cmdline
                .iter()
                .any(|a| a.contains(&*self.dir.to_string_lossy())),
            "pid {pid} is not this control plane's {name}"
        );
        (pid, cmdline)
    }

    /// Stops the control plane as an outage does: kube-apiserver, and with it
    /// kube-controller-manager and kube-scheduler (SIGTERM, then SIGKILL after 15 s).
    /// On a real control plane they share the host, so they restart together; left
    /// running, the controller manager's caches once stayed stale after the API server
    /// came back (see `h_apiserver_down_mid_drain`), which tests the controller
    /// manager, not us. etcd and KWOK keep running and retry. Panics when one of them
    /// is not running.
    pub fn stop_apiserver(&self) -> StoppedApiserver {
        let mut stopped_procs = Vec::new();
        for name in OUTAGE_PROCS {
            let (pid, cmdline) = self.running(name);
            let status = Command::new("kill").args(["-TERM", &pid]).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "kill -TERM {pid} ({name}) failed"
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty()) {
                if Instant::now() > deadline {
                    let _ = Command::new("kill").args(["-KILL", &pid]).status();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            stopped_procs.push((name.to_string(), cmdline));
        }
        StoppedApiserver {
            stopped_procs,
            stopped: Instant::now(),
        }
    }

    /// Starts `cmdline` again as `name` (logging to the same file, recorded in the pids
    /// file so `down` stops it).
    #[allow(clippy::zombie_processes)] // `controlplane.sh down` stops it, by pid.
    fn restart(&self, name: &str, cmdline: &[String]) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join(format!("logs/{name}.log")))
            .unwrap_or_else(|e| panic!("{name} log: {e}"));
        let child = Command::new(&cmdline[0])
            .args(&cmdline[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("restarting {name}: {e}"));
        let mut pids = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("pids"))
            .expect("pids file");
        std::io::Write::write_all(&mut pids, format!("{name} {}\n", child.id()).as_bytes())
            .expect("recording the new pid");
    }
}

impl StoppedApiserver {
    /// How long it has been down.
    pub fn down_for(&self) -> Duration {
        self.stopped.elapsed()
    }

    /// Starts kube-apiserver again, waits until it serves requests, then starts the
    /// controllers stopped with it.
    pub async fn start(self, cp: &ControlPlane) {
        for (name, cmdline) in self.stopped_procs.iter().rev() {
            cp.restart(name, cmdline);
            if name != "kube-apiserver" {
                continue;
            }
            let client = cp.client().await;
            wait_for(
                "kube-apiserver serving again",
                Duration::from_secs(90),
                || {
                    let api: Api<Namespace> = Api::all(client.clone());
                    async move {
                        api.list(&ListParams::default().limit(1))
                            .await
                            .ok()
                            .map(|_| ())
                    }
                },
            )
            .await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("down")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
    }
}

static SHARED: OnceLock<ControlPlane> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

/// The control plane shared by this test binary's tests, and the lock that makes them
/// run one at a time.
pub fn shared() -> (&'static ControlPlane, MutexGuard<'static, ()>) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cp = SHARED.get_or_init(|| {
        let cp = ControlPlane::start();
        cp.watchdog();
        cp
    });
    (cp, guard)
}

/// An `autoscaler` process; killed on drop.
pub struct Autoscaler {
    /// The child.
    pub child: Child,
    /// Its log (stderr + stdout).
    pub log: PathBuf,
}

impl Autoscaler {
    /// Starts the binary with `args` (plus `--kubeconfig`), `env` extra variables.
    pub fn start(cp: &ControlPlane, name: &str, args: &[String], env: &[(&str, &str)]) -> Self {
        let log = cp.dir.join(format!("autoscaler-{name}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("autoscaler log");
        let mut c = Command::new(env!("CARGO_BIN_EXE_autoscaler"));
        c.args(args)
            .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log"))
            .stderr(f)
            .env("RUST_LOG", "info,autoscaler_bin=debug")
            .env_remove("KUBECONFIG");
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().expect("starting autoscaler");
        Autoscaler { child, log }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The log's last lines.
    pub fn tail(&self) -> String {
        tail(&self.log, 40)
    }

    /// Panics if the process exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("autoscaler exited ({st}); log tail:\n{}", self.tail());
        }
    }
}

impl Drop for Autoscaler {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.tail());
            if let Some(dir) = self.log.parent() {
                eprintln!("{}", control_plane_state(dir));
            }
        }
    }
}

/// What a failed scenario needs to tell whose fault it was: the nodes and pods as the
/// apiserver sees them, and the last lines of the scheduler's, KWOK's and the
/// controller manager's logs (a pod stuck Pending with a node is theirs, not ours).
fn control_plane_state(dir: &Path) -> String {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let mut out = String::new();
    for what in [["get", "nodes"], ["get", "pods"]] {
        let shown = Command::new(&kubectl)
            .arg(format!("--kubeconfig={}", dir.join("kubeconfig").display()))
            .args(what)
            .args(["-A", "-o", "wide", "--request-timeout=10s"])
            .stdin(Stdio::null())
            .output();
        out += &match shown {
            Ok(o) => format!(
                "--- kubectl {} ---\n{}{}\n",
                what.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("--- kubectl {}: {e} ---\n", what.join(" ")),
        };
    }
    for name in ["kube-scheduler", "kwok", "kube-controller-manager"] {
        let log = dir.join("logs").join(format!("{name}.log"));
        out += &format!("--- {} ---\n{}\n", log.display(), tail(&log, 25));
    }
    out
}

/// The flags every scenario uses: the static provider with KWOK nodes, a group `group`
/// of 0..10, fast rounds, short scale-down timers, state in namespace `ns`.
pub fn base_args(ns: &str, group: &str) -> Vec<String> {
    [
        "--cloud-provider=static",
        &format!("--nodes=0:10:{group}"),
        "--static-create-kwok-nodes",
        &format!("--namespace={ns}"),
        "--leader-elect=false",
        "--scan-interval=1s",
        "--metrics-address=127.0.0.1:0",
        "--scale-down-delay-after-add=0s",
        "--scale-down-unneeded-time=5s",
        "--max-node-provision-time=2m",
        "--max-pod-eviction-time=2m",
        "--max-graceful-termination-sec=5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `E2E_WAIT_SCALE` (default 1): how much longer every [`wait_for`] may wait. On a
/// loaded 2-core CI machine KWOK, moto and the scheduler can each take a minute where
/// they take seconds alone; the waits are bounds, not the figures (those are printed).
fn wait_scale() -> u32 {
    std::env::var("E2E_WAIT_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

/// Polls `f` every 200 ms until it returns `Some`, or panics naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let timeout = timeout * wait_scale();
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts a scenario: removes every static node a previous scenario may have left (a
/// failed one skips its cleanup) and creates a fresh namespace.
pub async fn namespace(client: &Client, ns: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let _ = nodes
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(GROUP_LABEL),
        )
        .await;
    wait_for("no static node left", Duration::from_secs(30), || {
        let nodes = nodes.clone();
        async move {
            let l = nodes
                .list(&ListParams::default().labels(GROUP_LABEL))
                .await
                .ok()?;
            l.items.is_empty().then_some(())
        }
    })
    .await;
    let api: Api<Namespace> = Api::all(client.clone());
    // Pods a failed scenario left (pending ones would keep other autoscalers busy).
    for other in api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        let name = other.name_any();
        if name.starts_with("e2e-") {
            let now = DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            let _ =
                Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), &name)
                    .delete_collection(&DeleteParams::default(), &ListParams::default())
                    .await;
            let _ = Api::<Pod>::namespaced(client.clone(), &name)
                .delete_collection(&now, &ListParams::default())
                .await;
        }
    }
    let _ = api.delete(ns, &DeleteParams::default()).await;
    wait_for(
        &format!("namespace {ns} gone"),
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move { api.get_opt(ns).await.ok().flatten().is_none().then_some(()) }
        },
    )
    .await;
    let obj: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create namespace");
    default_service_account(client, ns).await;
}

/// Waits for the `default` ServiceAccount that kube-controller-manager creates in a new
/// namespace: until it exists, the API server refuses pods there (403, "error looking up
/// service account"), which a loaded control plane made a test meet.
pub async fn default_service_account(client: &Client, ns: &str) {
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("the default ServiceAccount of {ns}"),
        Duration::from_secs(60),
        || {
            let accounts = accounts.clone();
            async move { accounts.get_opt("default").await.ok().flatten().map(|_| ()) }
        },
    )
    .await;
}

/// Removes what a scenario made: its pods (at once), its namespace, and the nodes of
/// its group.
pub async fn cleanup(client: &Client, ns: &str, group: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), ns);
    let _ = deployments
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let _ = pods.delete_collection(&now, &ListParams::default()).await;
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::default())
        .await;
    let nodes: Api<Node> = Api::all(client.clone());
    let _ = nodes
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&format!("{GROUP_LABEL}={group}")),
        )
        .await;
}

/// The Nodes of a static group.
pub async fn group_nodes(client: &Client, group: &str) -> Vec<Node> {
    Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{GROUP_LABEL}={group}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Whether a node's Ready condition is True.
pub fn is_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A bare pod requesting `cpu`.
pub fn pod(name: &str, cpu: &str, annotations: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]
        }
    }))
    .unwrap()
}

/// A Deployment of `replicas` pods labelled `app=name`, requesting `cpu`.
pub fn deployment(
    name: &str,
    replicas: u32,
    cpu: &str,
    annotations: serde_json::Value,
) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]
                }
            }
        }
    }))
    .unwrap()
}

/// Pods of `app=name` in `ns` (not terminating).
pub async fn app_pods(client: &Client, ns: &str, name: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Whether a pod is Running.
pub fn is_running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// The node a pod is bound to.
pub fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

/// events.k8s.io Events in `ns` (all namespaces when empty) with this reason.
pub async fn events(
    client: &Client,
    ns: &str,
    reason: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    let api: Api<k8s_openapi::api::events::v1::Event> = if ns.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), ns)
    };
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

/// Node names of a list.
pub fn names(nodes: &[Node]) -> Vec<String> {
    nodes.iter().map(|n| n.name_any()).collect()
}
