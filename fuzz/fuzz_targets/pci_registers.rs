#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vblk_transport_pci::fuzzing::pci_registers(data);
});
