use super::*;

fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

fn check(
    current: &[NodeId],
    next: &[NodeId],
    witnesses: &[NodeId],
    up: &[NodeId],
    force: bool,
) -> Result<(), String> {
    let roles = current
        .iter()
        .chain(next)
        .map(|id| {
            let role = if witnesses.contains(id) {
                Role::Witness
            } else {
                Role::Data
            };
            (*id, role)
        })
        .collect();
    check_voters(
        &VoterChange {
            current: &set(current),
            next: &set(next),
            roles: &roles,
            reachable: &set(up),
        },
        force,
    )
    .map_err(|e| e.to_string())
}

#[test]
fn growing_and_replacing_with_every_voter_up_is_allowed() {
    assert_eq!(check(&[1], &[1, 2], &[], &[1, 2], false), Ok(()));
    assert_eq!(check(&[1, 2], &[1, 2, 3], &[], &[1, 2, 3], false), Ok(()));
    // Replace a dead node 3 by 4: both quorums are reachable.
    assert_eq!(
        check(&[1, 2, 3], &[1, 2, 4], &[], &[1, 2, 4], false),
        Ok(())
    );
    // 3 data -> 2 data + witness.
    assert_eq!(
        check(&[1, 2, 3], &[1, 2, 9], &[9], &[1, 2, 3, 9], false),
        Ok(())
    );
}

#[test]
fn a_change_that_cannot_reach_a_quorum_is_refused_even_when_forced() {
    let e = check(&[1, 2, 3], &[1, 3], &[], &[1], true).unwrap_err();
    assert!(e.contains("only 1 of the voters"), "{e}");
    let e = check(&[1, 2, 3], &[1, 2, 3, 4], &[], &[1, 2], true).unwrap_err();
    assert!(e.contains("would lose quorum"), "{e}");
    // Removing one of two live voters while the third is down.
    let e = check(&[1, 2, 3], &[1, 3], &[], &[1, 2], true).unwrap_err();
    assert!(e.contains("would lose quorum"), "{e}");
}

#[test]
fn removing_the_last_margin_needs_force() {
    let e = check(&[1, 2, 3], &[1, 2], &[], &[1, 2, 3], false).unwrap_err();
    assert!(e.contains("--force"), "{e}");
    assert_eq!(check(&[1, 2, 3], &[1, 2], &[], &[1, 2, 3], true), Ok(()));
    // No margin to lose: removing the dead leader of a 2 + witness
    // cluster after the hand-over is allowed as it is.
    assert_eq!(check(&[1, 2, 9], &[2, 9], &[9], &[2, 9], false), Ok(()));
}

#[test]
fn witnesses_may_not_outnumber_data_voters_even_when_forced() {
    // One data node and two witnesses: refused, forced or not.
    let e = check(&[1, 9], &[1, 8, 9], &[8, 9], &[1, 8, 9], true).unwrap_err();
    assert!(
        e.contains("2 witnesses would outnumber 1 data voters"),
        "{e}"
    );
    let e = check(
        &[1, 2, 9],
        &[1, 7, 8, 9],
        &[7, 8, 9],
        &[1, 2, 7, 8, 9],
        true,
    )
    .unwrap_err();
    assert!(e.contains("outnumber"), "{e}");
    // As many witnesses as data voters is allowed: 2 + 2.
    assert_eq!(
        check(&[1, 2, 9], &[1, 2, 8, 9], &[8, 9], &[1, 2, 8, 9], false),
        Ok(())
    );
}

#[test]
fn no_change_may_leave_only_witnesses() {
    let e = check(&[1, 9], &[9], &[9], &[1, 9], true).unwrap_err();
    assert!(e.contains("no data voter"), "{e}");
}
