//! A receiver's bytes, made up, against a real sender of a real source tree: it ends with the
//! receiver's summary or an error, never a panic, a hang or memory beyond libFuzzer's limit, and
//! it sends each listed file at most once, whatever the requests and bases ask.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wire_fuzz::SenderInput;
use wire_fuzz::scene::Scene;

fuzz_target!(
    init: {
        wire_fuzz::capture::write_seeds("sender");
        Scene::get();
    },
    |data: &[u8]| {
        let scene = Scene::get();
        let input = SenderInput::parse(data);
        let mut conn = wire_fuzz::replay(input.stream);
        let mut sent = wire::send::Sent::default();
        let _ = wire::send::send_counted(&mut conn, &scene.source, &input.opts, &mut sent);
        assert!(
            sent.files <= scene.source_files && sent.bytes <= scene.source_bytes,
            "sent {sent:?} of a source with {} files of {} bytes in all",
            scene.source_files,
            scene.source_bytes
        );
        assert!(sent.wire <= sent.bytes, "{sent:?}");
    }
);
