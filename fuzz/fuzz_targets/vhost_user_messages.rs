#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vblk_transport_vhost_user::fuzzing::vhost_user_messages(data);
});
