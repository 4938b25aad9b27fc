//! Where a new meeting goes.

use crate::Node;

/// Busy shares closer than this count as equal, so that noise between two
/// idle nodes does not decide; connections and meetings decide then.
const BUSY_STEP: f64 = 0.05;

/// The live node that takes a new meeting: not draining, with the least busy
/// media worker, then the fewest connections, then the fewest meetings; ties
/// go to the lowest id (every node decides alike). `None` when every node
/// is draining.
pub fn place(nodes: &[Node]) -> Option<&Node> {
    nodes.iter().filter(|n| !n.draining).min_by(|a, b| {
        // A share that is not a number counts as fully busy: a node whose
        // counters are broken does not draw meetings to itself.
        let step = |n: &Node| {
            let busy = if n.load.busy.is_finite() {
                n.load.busy.clamp(0.0, 1.0)
            } else {
                1.0
            };
            (busy / BUSY_STEP).floor() as u64
        };
        (step(a), a.load.connections, a.load.meetings, &a.id).cmp(&(
            step(b),
            b.load.connections,
            b.load.meetings,
            &b.id,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Load;

    fn node(id: &str, busy: f64, connections: u64, draining: bool) -> Node {
        Node {
            id: id.into(),
            url: format!("https://{id}.example"),
            load: Load {
                busy,
                connections,
                meetings: 0,
            },
            draining,
        }
    }

    #[test]
    fn the_least_busy_node_that_is_not_draining_takes_the_meeting() {
        let nodes = [
            node("a", 0.50, 10, false),
            node("b", 0.10, 400, false),
            node("c", 0.02, 0, true),
        ];
        assert_eq!(place(&nodes).unwrap().id, "b");
    }

    #[test]
    fn between_idle_nodes_connections_decide_then_the_id() {
        let nodes = [
            node("c", 0.01, 3, false),
            node("a", 0.03, 5, false),
            node("b", 0.00, 3, false),
        ];
        assert_eq!(place(&nodes).unwrap().id, "b");
        let even = [node("c", 0.0, 0, false), node("a", 0.0, 0, false)];
        assert_eq!(place(&even).unwrap().id, "a");
    }

    #[test]
    fn no_node_when_all_drain_or_none_is_alive() {
        assert!(place(&[node("a", 0.0, 0, true)]).is_none());
        assert!(place(&[]).is_none());
    }

    #[test]
    fn a_load_that_is_not_a_number_counts_as_full() {
        let nodes = [node("a", f64::NAN, 0, false), node("b", 0.9, 50, false)];
        assert_eq!(place(&nodes).unwrap().id, "b");
    }
}
