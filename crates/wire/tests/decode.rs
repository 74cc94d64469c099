//! The message decoder against arbitrary bytes: a frame a peer makes up, or one cut short at
//! any point, is an error or a message, never a panic.

use proptest::prelude::*;
use wire::message::Message;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_frames_decode_or_fail_without_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn every_truncation_of_a_frame_with_a_known_type_is_handled(
        kind in 1u8..=19,
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut frame = vec![kind];
        frame.extend_from_slice(&body);
        for end in 0..=frame.len() {
            let _ = Message::decode(&frame[..end]);
        }
    }

    #[test]
    fn a_valid_message_cut_short_is_refused(cut in 1usize..64, name in "[a-z]{1,40}") {
        let msg = Message::Unreadable {
            name: name.into_bytes(),
            op: "stat".into(),
            error: "gone".into(),
        };
        let mut frame = Vec::new();
        msg.encode(&mut frame);
        prop_assert_eq!(Message::decode(&frame).unwrap(), msg);
        let end = frame.len().saturating_sub(cut);
        prop_assert!(Message::decode(&frame[..end]).is_err());
    }
}
