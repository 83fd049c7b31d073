//! Server processes of a test's own (a broker, a Redis), and free ports for them.

use std::time::Duration;

use super::wait::eventually_every;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A server process of a test's own (a broker, a Redis), which the test kills and starts again at will; it is
/// killed when dropped.
#[derive(Default)]
pub struct Server {
    child: Option<std::process::Child>,
}

impl Server {
    /// Spawns `command`, then waits until `ready` says it answers.
    pub async fn start(&mut self, command: &mut std::process::Command, what: &str, ready: impl Fn() -> bool) {
        let child = command.spawn().unwrap_or_else(|err| panic!("{what} does not start ({err})"));
        self.child = Some(child);
        let answering = format!("{what} answers");
        eventually_every(&answering, Duration::from_secs(20), Duration::from_millis(50), || {
            std::future::ready(ready().then_some(()))
        })
        .await;
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Kills it the hard way, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
