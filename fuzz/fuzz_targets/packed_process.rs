#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vblk_device::fuzzing_packed::packed_process(data);
});
