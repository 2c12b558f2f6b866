//! A private network for a cluster test, made of Linux network namespaces, so that a test can cut
//! one node off from the others the way a real network does: packets silently dropped, nothing
//! refused, TCP left to time out.
//!
//! Layout: a router namespace `R` with one veth link per node namespace (node `i` is
//! `10.X.(i+1).2/24`, its router side `10.X.(i+1).1`) and one to the test's own namespace
//! (`10.X.250.2`, router side `10.X.250.1`, where the test adds a route to `10.X.0.0/16`), so the
//! rdkafka clients of the test reach every node directly. `R` forwards between its links; the
//! faults are policy-routing rules in `R` of type `blackhole` (`ip rule add from A to B
//! blackhole`), which drop forwarded packets without a word to either side. Only iproute2's `ip`
//! is needed (no iptables or nftables), run as root: [`Lan::create`] says why it cannot when it
//! cannot (not root, no `ip`, namespaces refused), and tests skip what needs it.
//!
//! Names carry the test process's id (`strom-<pid>-<n>-…`); a namespace left behind by a
//! process that no longer exists (a test killed before its drop ran) is removed by the next
//! [`Lan::create`]. Dropping a `Lan` removes its namespaces, which also removes its veth links
//! and the route in the test's namespace.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Prefix of every namespace a `Lan` creates.
const PREFIX: &str = "strom-";
/// Third octet of the subnet between the test's namespace and the router.
const HOST_SUBNET: u8 = 250;

/// Runs `ip` with `args`; the error names the command and carries its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The output of `ip args`, empty if it fails.
fn ip_output(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A router namespace and one namespace per node; see the module doc.
pub struct Lan {
    /// `strom-<pid>-<n>`: the prefix of this network's namespaces.
    name: String,
    /// The second octet of every address (`10.X.…`).
    octet: u8,
    nodes: usize,
    /// The policy rules in force (the arguments after `ip -n R rule add`).
    rules: Vec<Vec<String>>,
}

impl Lan {
    /// Creates the namespaces and links for `nodes` nodes; the error says why it cannot be done
    /// here (most often: not root).
    pub fn create(nodes: usize) -> Result<Lan, String> {
        // One creation at a time in this process: the choice of a free subnet is not atomic.
        static CREATING: Mutex<()> = Mutex::new(());
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let _guard = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        remove_stale_namespaces();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let octet = free_octet()?;
        let mut lan = Lan {
            name,
            octet,
            nodes,
            rules: Vec::new(),
        };
        lan.build().map_err(|e| {
            format!("{e} (network namespaces need root and iproute2: `ip netns add` must work)")
        })?;
        Ok(lan)
    }

    fn build(&mut self) -> Result<(), String> {
        let router = self.router();
        ip(&["netns", "add", &router])?;
        let forwarding = Command::new("ip")
            .args(["netns", "exec", &router, "sh", "-c"])
            .arg("echo 1 > /proc/sys/net/ipv4/ip_forward")
            .status()
            .map_err(|e| format!("enable forwarding in {router}: {e}"))?;
        if !forwarding.success() {
            return Err(format!("enabling forwarding in {router} failed"));
        }
        for node in 0..self.nodes {
            let netns = self.node_netns(node);
            let subnet = self.subnet(node);
            ip(&["netns", "add", &netns])?;
            self.link(&format!("n{node}"), Some(&netns), "eth0", subnet)?;
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
            let gateway = format!("10.{}.{subnet}.1", self.octet);
            ip(&["-n", &netns, "route", "add", "default", "via", &gateway])?;
        }
        let host_link = self.host_link();
        self.link("uplink", None, &host_link, HOST_SUBNET)?;
        let gateway = format!("10.{}.{HOST_SUBNET}.1", self.octet);
        let network = format!("10.{}.0.0/16", self.octet);
        ip(&["route", "add", &network, "via", &gateway, "dev", &host_link])
    }

    /// A veth link between the router (`router_end`, `10.X.subnet.1`) and the namespace `far`
    /// (the test's own when `None`; `far_end`, `10.X.subnet.2`), both ends up.
    fn link(
        &self,
        router_end: &str,
        far: Option<&str>,
        far_end: &str,
        subnet: u8,
    ) -> Result<(), String> {
        let router = self.router();
        // `netns <pid>` names the namespace of that process: the test's own.
        let own = std::process::id().to_string();
        let far_netns = far.unwrap_or(&own);
        ip(&[
            "-n", &router, "link", "add", router_end, "type", "veth", "peer", "name", far_end,
            "netns", far_netns,
        ])?;
        for (netns, end, host) in [(Some(router.as_str()), router_end, 1), (far, far_end, 2)] {
            let in_netns: Vec<&str> = netns.map_or(Vec::new(), |netns| vec!["-n", netns]);
            let address = format!("10.{}.{subnet}.{host}/24", self.octet);
            ip(&[in_netns.as_slice(), &["addr", "add", &address, "dev", end]].concat())?;
            ip(&[in_netns.as_slice(), &["link", "set", end, "up"]].concat())?;
        }
        Ok(())
    }

    fn router(&self) -> String {
        format!("{}-r", self.name)
    }

    /// The veth end in the test's own namespace: interface names have at most 15 bytes.
    fn host_link(&self) -> String {
        let tail = &self.name[PREFIX.len()..];
        format!("st{tail}")
    }

    fn subnet(&self, node: usize) -> u8 {
        u8::try_from(node + 1).expect("fewer than 250 nodes")
    }

    /// The namespace node `node` (from 0) runs in.
    pub fn node_netns(&self, node: usize) -> String {
        format!("{}-n{node}", self.name)
    }

    /// The address of node `node` (from 0).
    pub fn node_host(&self, node: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, self.octet, self.subnet(node), 2))
    }

    /// Cuts node `node` off from the other nodes; the test's clients still reach it.
    pub fn isolate_from_peers(&mut self, node: usize) -> Result<(), String> {
        let me = self.node_host(node).to_string();
        for peer in (0..self.nodes).filter(|p| *p != node) {
            let other = self.node_host(peer).to_string();
            self.add_rule(&["from", &me, "to", &other, "blackhole"])?;
            self.add_rule(&["from", &other, "to", &me, "blackhole"])?;
        }
        Ok(())
    }

    /// Cuts node `node` off from everyone, the test's clients included.
    pub fn cut_off(&mut self, node: usize) -> Result<(), String> {
        let me = self.node_host(node).to_string();
        self.add_rule(&["from", &me, "blackhole"])?;
        self.add_rule(&["to", &me, "blackhole"])
    }

    /// Removes every fault: all nodes reach each other again.
    pub fn heal(&mut self) -> Result<(), String> {
        let router = self.router();
        while let Some(rule) = self.rules.pop() {
            let mut args = vec!["-n", &router, "rule", "del"];
            args.extend(rule.iter().map(String::as_str));
            ip(&args)?;
        }
        Ok(())
    }

    fn add_rule(&mut self, rule: &[&str]) -> Result<(), String> {
        let router = self.router();
        let mut args = vec!["-n", &router, "rule", "add"];
        args.extend_from_slice(rule);
        ip(&args)?;
        self.rules
            .push(rule.iter().map(|s| (*s).to_string()).collect());
        Ok(())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Removing the router namespace removes both veth ends of every link, and with the test
        // namespace's end, its route.
        for node in 0..self.nodes {
            let _ = ip(&["netns", "del", &self.node_netns(node)]);
        }
        let _ = ip(&["netns", "del", &self.router()]);
        let _ = ip(&["link", "del", &self.host_link()]);
    }
}

/// Removes namespaces named by a `Lan` of a process that no longer runs.
fn remove_stale_namespaces() {
    for line in ip_output(&["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A second octet `X` such that nothing in the test's namespace routes `10.X.0.0/16` yet.
fn free_octet() -> Result<u8, String> {
    let routes = ip_output(&["-4", "route", "show"]);
    let start = std::process::id() % 100;
    (0..100)
        .map(|i| u8::try_from(100 + (start + i) % 100).expect("below 200"))
        .find(|octet| {
            let prefix = format!("10.{octet}.");
            !routes.lines().any(|route| route.starts_with(&prefix))
        })
        .ok_or_else(|| "no free 10.X.0.0/16 subnet for a test network".to_string())
}
