//! A NATS cluster on loopback: `nats-server` processes (Debian's, installed
//! by `scripts/nats-env.sh`) joined by cluster routes, JetStream on, each
//! with its own client, cluster and monitoring ports and its own store
//! folder. A node can be killed and started again on the same ports.

use crate::harness::holdfast::spawn_logged;
use crate::harness::ports::free_port;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long a node may take to start and join the others.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One server of the cluster.
struct Node {
    name: String,
    /// Client port.
    port: u16,
    cluster_port: u16,
    monitor_port: u16,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<String>>>,
}

/// A running cluster.
pub struct NatsCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
    /// More `nats-server` arguments for every node (`--auth <token>`...).
    extra: Vec<String>,
}

fn binary() -> &'static str {
    // Debian installs it in /usr/sbin, which a user's PATH may not have.
    if std::path::Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}

impl NatsCluster {
    /// Starts `size` servers routed to each other and waits until every one
    /// answers its health check and has a route to every other.
    pub async fn start(size: usize) -> NatsCluster {
        let ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        NatsCluster::start_on(&ports).await
    }

    /// As [`NatsCluster::start`], one node per client port given.
    pub async fn start_on(ports: &[u16]) -> NatsCluster {
        NatsCluster::start_with(ports, &[]).await
    }

    /// As [`NatsCluster::start_on`], every node also given `extra`
    /// arguments.
    pub async fn start_with(ports: &[u16], extra: &[&str]) -> NatsCluster {
        let size = ports.len();
        let dir =
            std::env::temp_dir().join(format!("hf-nats-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("nats folder");
        let nodes = (0..size)
            .map(|i| Node {
                name: format!("n{i}"),
                port: ports[i],
                cluster_port: free_port(),
                monitor_port: free_port(),
                child: None,
                logs: Arc::new(Mutex::new(Vec::new())),
            })
            .collect();
        let mut cluster = NatsCluster {
            nodes,
            dir,
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster.wait_ready().await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect();
        let node = &mut self.nodes[i];
        let store = self.dir.join(&node.name);
        let mut command = Command::new(binary());
        command
            .args(["-a", "127.0.0.1", "-p", &node.port.to_string()])
            .args(["-m", &node.monitor_port.to_string()])
            .args(["-n", &node.name]);
        // A lone server is no cluster (JetStream refuses a cluster of one).
        if !routes.is_empty() {
            command
                .args(["--cluster_name", "hf"])
                .args([
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", node.cluster_port),
                ])
                .args(["--routes", &routes.join(",")]);
        }
        command.args(&self.extra).arg("-js").arg("-sd").arg(&store);
        let (child, logs, _) = spawn_logged(
            &mut command,
            "nats-server (scripts/nats-env.sh installs it)",
        );
        node.logs = logs;
        node.child = Some(child);
    }

    /// A monitoring endpoint's JSON; `None` while the node is down.
    async fn monitor(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = self.nodes[i].monitor_port;
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: n\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n")?;
        // HTTP/1.0: the body is plain (never chunked) and ends at close.
        if !head.lines().next().is_some_and(|l| l.contains(" 200 ")) {
            return None;
        }
        serde_json::from_str(body).ok()
    }

    /// Waits until every running node is healthy and routed to every other
    /// running node. (The servers say so only on their monitoring port.)
    pub async fn wait_ready(&self) {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .collect();
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            loop {
                let mut all = true;
                for &i in &running {
                    let routes = self
                        .monitor(i, "/routez")
                        .await
                        .and_then(|v| v["num_routes"].as_u64());
                    all &= routes.is_some_and(|n| n as usize >= running.len() - 1);
                }
                if all {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(ready.is_ok(), "NATS cluster not ready:\n{}", self.logs());
    }

    /// Client URLs of every node, comma-separated (for `bus_url`).
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// Whether `subscribers` clients subscribe to `subject` (counted on
    /// the nodes they are connected to) and every running node has heard,
    /// over its routes, of each other node's interest: only then does a
    /// publish on any node reach all of them. Interest crosses the routes
    /// a moment after a subscription; only the monitoring port shows it.
    pub async fn interest_everywhere(&self, subject: &str, subscribers: usize) -> bool {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .collect();
        let mut holders = Vec::new();
        let mut total = 0;
        for &i in &running {
            // In a query string `%` must itself be escaped.
            let query = subject.replace('%', "%25");
            let Some(subsz) = self
                .monitor(i, &format!("/subsz?subs=1&test={query}"))
                .await
            else {
                return false;
            };
            let local = subsz["subscriptions_list"].as_array().map_or(0, Vec::len);
            total += local;
            if local > 0 {
                let Some(varz) = self.monitor(i, "/varz").await else {
                    return false;
                };
                holders.push((i, varz["server_id"].as_str().unwrap_or_default().to_owned()));
            }
        }
        if total < subscribers {
            return false;
        }
        for &i in &running {
            let Some(routez) = self.monitor(i, "/routez?subs=1").await else {
                return false;
            };
            let routes = routez["routes"].as_array().cloned().unwrap_or_default();
            for (holder, id) in &holders {
                if *holder == i {
                    continue;
                }
                let heard = routes.iter().any(|r| {
                    r["remote_id"].as_str() == Some(id)
                        && r["subscriptions_list"]
                            .as_array()
                            .is_some_and(|l| l.iter().any(|s| s.as_str() == Some(subject)))
                });
                if !heard {
                    return false;
                }
            }
        }
        true
    }

    /// Kills node `i` (SIGKILL: no goodbye to clients or routes).
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts node `i` again, with its store, and waits for the cluster.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_ready().await;
    }

    /// What every node printed.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {}:\n{}", n.name, n.logs.lock().unwrap().join("\n")))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child {
                let _ = child.start_kill();
            }
        }
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child {
                for _ in 0..100 {
                    if !matches!(child.try_wait(), Ok(None)) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
