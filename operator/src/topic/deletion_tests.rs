use kafka_crds::conditions::reasons;
use smq_client::DeletionRequest;

use super::decide::Verdict;
use super::deletion::{DeletionFacts, DeletionStep, GATEWAY_GRACE, deletion_step};

const NOW: i64 = 1_000_000_000;

fn facts(exists: bool, request: Option<DeletionRequest>, running: bool) -> DeletionFacts {
    DeletionFacts {
        topic_exists: exists,
        request,
        gateway_running: running,
        now_ms: NOW,
    }
}

fn request(at: i64, failed: u32) -> DeletionRequest {
    DeletionRequest {
        requested_by: "KafkaTopic ns/orders".into(),
        requested_at_ms: at,
        failed_attempts: failed,
        last_error: (failed > 0).then(|| "SMQ unreachable".to_string()),
    }
}

fn step(f: &DeletionFacts) -> DeletionStep {
    deletion_step("orders", "kafka/orders", f)
}

#[test]
fn a_running_gateway_is_asked_and_waited_for() {
    assert_eq!(step(&facts(true, None, true)), DeletionStep::Request);
    let DeletionStep::Wait(Verdict::Progressing { reason, message }) =
        step(&facts(true, Some(request(NOW - 1000, 0)), true))
    else {
        panic!("expected to wait")
    };
    assert_eq!(reason, reasons::DELETING);
    assert!(message.contains("orders"), "{message}");
    // Deleted by the gateway, request not yet removed: still waiting.
    assert!(matches!(
        step(&facts(false, Some(request(NOW - 1000, 0)), true)),
        DeletionStep::Wait(_)
    ));
}

#[test]
fn the_gateways_failures_show_as_a_condition() {
    let DeletionStep::Wait(Verdict::Progressing { reason, message }) =
        step(&facts(true, Some(request(NOW - 500_000, 3)), true))
    else {
        panic!("expected to wait")
    };
    assert_eq!(reason, reasons::DELETION_FAILED);
    assert!(
        message.contains("3 times") && message.contains("SMQ unreachable"),
        "{message}"
    );
}

#[test]
fn done_once_the_request_is_gone_and_smq_has_no_topic() {
    let DeletionStep::Done(e) = step(&facts(false, None, true)) else {
        panic!("expected done")
    };
    assert!(!e.warning);
    assert_eq!(e.reason, "TopicDeleted");
    // Also when the gateway is gone: nothing is left to do.
    assert!(matches!(
        step(&facts(false, None, false)),
        DeletionStep::Done(_)
    ));
}

#[test]
fn without_a_gateway_the_name_is_retired_by_the_operator() {
    let DeletionStep::WithoutGateway(e) = step(&facts(true, None, false)) else {
        panic!("expected to do without a gateway")
    };
    assert!(e.warning && e.message.contains("committed offsets were not dropped"));
    let late = NOW - GATEWAY_GRACE.as_millis() as i64 - 1;
    assert!(matches!(
        step(&facts(true, Some(request(late, 0)), true)),
        DeletionStep::WithoutGateway(_)
    ));
    // A gateway that tried and failed is waited for: it will retry.
    assert!(matches!(
        step(&facts(true, Some(request(late, 1)), true)),
        DeletionStep::Wait(_)
    ));
}
