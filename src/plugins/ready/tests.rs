use super::*;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::plugin::{Next, Request, Served};
use crate::plugins::prometheus::tests::build_str;

struct Slow {
    name: &'static str,
    ready: AtomicBool,
}

impl Plugin for Slow {
    fn name(&self) -> &'static str {
        self.name
    }
    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        next.serve(req)
    }
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

fn slow(name: &'static str, ready: bool) -> Arc<Slow> {
    Arc::new(Slow {
        name,
        ready: AtomicBool::new(ready),
    })
}

#[test]
fn setup_errors_read_as_coredns() {
    for (conf, want) in [
        (
            ". {\n ready\n ready\n whoami\n}\n",
            "can only be used once per Server Block",
        ),
        (
            ". {\n ready bla\n whoami\n}\n",
            "plugin/ready: address bla: missing port in address",
        ),
        (". {\n ready bla bla\n whoami\n}\n", "Wrong argument count"),
        (
            ". {\n ready {\n  monitor\n }\n whoami\n}\n",
            "Corefile:3 - Error during parsing: Wrong argument count",
        ),
        (
            ". {\n ready {\n  monitor 404\n }\n whoami\n}\n",
            "Corefile:3 - Error during parsing: monitor type '404' not supported",
        ),
        (
            ". {\n ready {\n  monitro continuously\n }\n whoami\n}\n",
            "Corefile:3 - Error during parsing: unknown property 'monitro'",
        ),
    ] {
        let err = build_str(conf).err().unwrap_or_default();
        assert!(err.contains(want), "{conf:?}: {err}");
    }
    assert!(
        build_str(". {\n ready localhost:1234 {\n  monitor continuously\n }\n whoami\n}\n").is_ok()
    );
}

#[test]
fn reports_plugins_not_ready_sorted_until_ready() {
    let list = ReadyList::default();
    let k8s = slow("kubernetes", false);
    let file = slow("file", false);
    let chain = Chain {
        plugins: vec![k8s.clone(), file.clone(), slow("whoami", true)],
    };
    list.watch(&chain);
    // A second block with its own kubernetes: reported once.
    let k8s2 = slow("kubernetes", true);
    list.watch(&Chain {
        plugins: vec![k8s2.clone()],
    });
    assert_eq!(list.not_ready(), vec!["file", "kubernetes"]);
    file.ready.store(true, Ordering::Relaxed);
    assert_eq!(list.not_ready(), vec!["kubernetes"]);
    k8s.ready.store(true, Ordering::Relaxed);
    assert!(list.not_ready().is_empty());
    // Until-ready: once ready, never asked again.
    k8s.ready.store(false, Ordering::Relaxed);
    assert!(list.not_ready().is_empty());
}

#[test]
fn continuously_keeps_asking() {
    let list = ReadyList::default();
    list.0.lock().unwrap().continuously = true;
    let k8s = slow("kubernetes", true);
    list.watch(&Chain {
        plugins: vec![k8s.clone()],
    });
    assert!(list.not_ready().is_empty());
    k8s.ready.store(false, Ordering::Relaxed);
    assert_eq!(list.not_ready(), vec!["kubernetes"]);
}

#[test]
fn endpoint_answers_ok_then_shutting_down() {
    let (_, shared) = build_str(". {\n ready 127.0.0.1:18181\n whoami\n}\n").unwrap();
    let routes = shared.http.lock().unwrap();
    let (addr, path, handler) = &routes[0];
    assert_eq!(
        (addr.to_string().as_str(), *path),
        ("127.0.0.1:18181", "/ready")
    );
    let r = handler();
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    shared.shutting_down.store(true, Ordering::Relaxed);
    let r = handler();
    assert_eq!((r.status, r.body.as_str()), (503, "Shutting down"));
}

#[test]
fn dropped_configurations_are_forgotten() {
    let list = ReadyList::default();
    let k8s = slow("kubernetes", false);
    list.watch(&Chain {
        plugins: vec![k8s.clone()],
    });
    assert_eq!(list.not_ready(), vec!["kubernetes"]);
    drop(k8s);
    assert!(list.not_ready().is_empty());
}
