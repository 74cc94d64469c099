//! A sender's bytes, made up, against a real receiver writing into a real target (laid out anew
//! for each input): it ends with a summary or an error, never a panic, a hang or memory beyond
//! libFuzzer's limit; nothing outside the target changes, whatever the target's symlinks point
//! at; and no temporary entry is left behind.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wire_fuzz::ReceiverInput;
use wire_fuzz::scene::Scene;

fuzz_target!(
    init: {
        wire_fuzz::capture::write_seeds("receiver");
        Scene::get();
    },
    |data: &[u8]| {
        let scene = Scene::get();
        let input = ReceiverInput::parse(data);
        scene.reset_target();
        let mut conn = wire_fuzz::replay(input.stream);
        if let Ok(s) = wire::receive::receive(&mut conn, &scene.target, input.opts, "fuzz") {
            assert!(s.exit_code == 0 || s.exit_code == 23, "{s:?}");
            assert!(s.entries.failed == 0 || s.exit_code == 23, "{s:?}");
        }
        scene.assert_outside_untouched();
        scene.assert_no_temporary_left();
    }
);
