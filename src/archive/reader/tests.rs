use object_store::path::Path;

use super::fixtures::{archive, put, put_bytes};
use super::*;
use crate::archive::block::tests::raw_range;

async fn run_verify(archive: &Archive, from: Option<u64>) -> (VerifyReport, String) {
    let mut out = Vec::new();
    let report = verify(archive, &mut out, from, None)
        .await
        .expect("verify runs");
    (report, String::from_utf8(out).expect("utf-8"))
}

#[tokio::test]
async fn a_gap_is_reported() {
    let a = archive();
    bounds::ensure_origin(&a, 1).await.expect("origin");
    put(&a, 31, 40).await;
    put(&a, 1, 10).await;
    put(&a, 11, 20).await;
    let (report, text) = run_verify(&a, None).await;
    assert_eq!(report.gaps, vec![(21, 30)], "{text}");
    assert!(!report.ok());
    assert_eq!(report.blocks, 3);
    assert_eq!((report.first_index, report.last_index), (Some(1), Some(40)));
    assert!(report.corrupt.is_empty() && report.overlaps.is_empty());
    assert!(text.contains("GAP      21..=30"), "{text}");
    assert!(text.contains("FAILED"), "{text}");

    let (report, _) = run_verify(&a, Some(15)).await;
    assert_eq!((report.blocks, report.gaps.clone()), (2, vec![(21, 30)]));
    let (report, _) = run_verify(&a, Some(31)).await;
    assert!(report.ok());
    assert_eq!(report.blocks, 1);
}

#[tokio::test]
async fn an_archive_that_lacks_its_beginning_fails_naming_the_range() {
    let a = archive();
    bounds::ensure_origin(&a, 0).await.expect("origin");
    put(&a, 883, 900).await;
    put(&a, 901, 1204).await;
    let (report, text) = run_verify(&a, None).await;
    assert_eq!(report.missing, vec![(0, 882)], "{text}");
    assert!(!report.ok());
    assert!(text.contains("MISSING  0..=882"), "{text}");
    assert!(text.contains("FAILED"), "{text}");
}

#[tokio::test]
async fn an_archive_with_a_head_but_no_origin_is_taken_to_begin_at_zero() {
    let a = archive();
    put(&a, 10, 20).await;
    bounds::raise_head(&a, 20).await.expect("head");
    let (report, text) = run_verify(&a, None).await;
    assert_eq!(report.missing, vec![(0, 9)], "{text}");
    assert!(text.contains("not recorded"), "{text}");
}

#[tokio::test]
async fn an_archive_from_before_the_records_has_its_start_unchecked() {
    let a = archive();
    put(&a, 10, 20).await;
    let (report, text) = run_verify(&a, None).await;
    assert!(report.ok(), "{text}");
    assert!(text.contains("the start is not checked"), "{text}");
}

#[tokio::test]
async fn blocks_that_stop_before_the_cluster_cursor_fail_naming_the_range() {
    // What a node's own directory holds when it led first and another
    // node archived the rest elsewhere: whole by its own records.
    let a = archive();
    bounds::ensure_origin(&a, 0).await.expect("origin");
    put(&a, 0, 882).await;
    bounds::raise_head(&a, 882).await.expect("head");
    let (report, text) = run_verify(&a, None).await;
    assert!(report.ok(), "{text}");
    let mut out = Vec::new();
    let report = verify(&a, &mut out, None, Some(1204))
        .await
        .expect("verify runs");
    let text = String::from_utf8(out).expect("utf-8");
    assert_eq!(report.missing, vec![(883, 1204)], "{text}");
    assert!(
        text.contains("cluster  the cluster's archive cursor is 1204"),
        "{text}"
    );
}

#[tokio::test]
async fn a_malformed_bounds_record_fails_verify_naming_it() {
    let a = archive();
    put(&a, 0, 5).await;
    put_bytes(&a, &Path::from("t/bounds/origin.json"), "{".into()).await;
    let (report, text) = run_verify(&a, None).await;
    assert!(!report.ok(), "{text}");
    assert_eq!(report.corrupt.len(), 1, "{text}");
    assert!(report.corrupt[0].0.contains("origin.json"), "{text}");
}

#[tokio::test]
async fn blocks_expired_by_retention_are_not_missing() {
    let a = archive();
    bounds::ensure_origin(&a, 0).await.expect("origin");
    bounds::raise_expired(&a, 50).await.expect("expired");
    put(&a, 50, 60).await;
    let (report, text) = run_verify(&a, None).await;
    assert!(report.ok(), "{text}");
    assert!(text.contains("deleted by retention"), "{text}");

    // Retention accounts only for what it deleted.
    let b = archive();
    bounds::ensure_origin(&b, 0).await.expect("origin");
    bounds::raise_expired(&b, 50).await.expect("expired");
    put(&b, 70, 80).await;
    let (report, text) = run_verify(&b, None).await;
    assert_eq!(report.missing, vec![(50, 69)], "{text}");
}

#[tokio::test]
async fn blocks_that_stop_before_the_recorded_head_fail_naming_the_range() {
    let a = archive();
    bounds::ensure_origin(&a, 0).await.expect("origin");
    put(&a, 0, 10).await;
    bounds::raise_head(&a, 25).await.expect("head");
    let (report, text) = run_verify(&a, None).await;
    assert_eq!(report.missing, vec![(11, 25)], "{text}");
    assert!(!report.ok());

    // Every block gone, the records still there: all of it is missing.
    let b = archive();
    bounds::ensure_origin(&b, 0).await.expect("origin");
    bounds::raise_head(&b, 25).await.expect("head");
    let (report, text) = run_verify(&b, None).await;
    assert_eq!(report.missing, vec![(0, 25)], "{text}");
}

#[tokio::test]
async fn a_contiguous_archive_verifies() {
    let a = archive();
    bounds::ensure_origin(&a, 5).await.expect("origin");
    let mut bytes = 0;
    for (first, last) in [(5, 10), (11, 20), (21, 21), (22, 40)] {
        bytes += put(&a, first, last).await.len() as u64;
    }
    put_bytes(&a, &Path::from("t/blocks/README"), "hello".into()).await;
    put_bytes(&a, &Path::from("t/other/x"), "not listed".into()).await;
    let (report, text) = run_verify(&a, None).await;
    assert!(report.ok(), "{report:?}\n{text}");
    assert_eq!(report.blocks, 4);
    assert_eq!(report.bytes, bytes);
    assert_eq!((report.first_index, report.last_index), (Some(5), Some(40)));
    assert_eq!(report.foreign, vec!["t/blocks/README".to_string()]);
    // raw_range cycles logs, metrics, traces, blank, membership, cursor:
    // 3, 4 and 5 records.
    let logs = (5..=40u64).filter(|i| i % 6 == 0).count() as u64 * 3;
    let metrics = (5..=40u64).filter(|i| i % 6 == 1).count() as u64 * 4;
    let traces = (5..=40u64).filter(|i| i % 6 == 2).count() as u64 * 5;
    assert_eq!(report.records, (logs, metrics, traces));
    assert!(text.ends_with("OK\n"), "{text}");
}

#[tokio::test]
async fn corrupt_mislabelled_and_overlapping_blocks_are_reported() {
    let a = archive();
    put(&a, 1, 10).await;
    let good = block::seal(&raw_range(11, 20)).expect("seals").bytes;
    let mut bad = good.to_vec();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x40;
    put_bytes(&a, &block::block_key("t", 11, 20), bad.into()).await;
    // A valid block under the wrong key.
    let other = block::seal(&raw_range(21, 30)).expect("seals").bytes;
    put_bytes(&a, &block::block_key("t", 21, 31), other).await;
    put(&a, 25, 40).await;
    let (report, text) = run_verify(&a, None).await;
    assert!(!report.ok());
    let corrupt: Vec<&str> = report.corrupt.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        corrupt,
        vec![
            block::block_key("t", 11, 20).as_ref(),
            block::block_key("t", 21, 31).as_ref()
        ],
        "{text}"
    );
    assert!(report.corrupt[0].1.contains("checksum"), "{text}");
    assert!(report.corrupt[1].1.contains("key names 21..=31"), "{text}");
    assert!(report.gaps.is_empty(), "{text}");
    assert_eq!(
        report.overlaps,
        vec![(
            block::block_key("t", 21, 31).to_string(),
            block::block_key("t", 25, 40).to_string()
        )]
    );
    assert_eq!(report.blocks, 4);
}

#[tokio::test]
async fn an_empty_archive_is_ok_and_empty() {
    let (report, text) = run_verify(&archive(), None).await;
    assert!(report.ok());
    assert_eq!((report.blocks, report.first_index), (0, None));
    assert!(text.contains("0 blocks"), "{text}");
}
