//! Memory and connection changes while requests are in flight.

use super::*;

/// Start `n` 64 KiB reads (not waited for); their status addresses.
fn in_flight(d: &mut Driver, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| d.submit(&Request::read(8 * i as u64, 65536)).1.status)
        .collect()
}

fn completions(d: &mut Driver, n: usize) -> String {
    let mut got = 0;
    while got < n && d.wait_used_for(SHORT).is_some() {
        got += 1;
    }
    format!("{got}/{n} completed")
}

fn set_mem_table_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    let st = in_flight(&mut d, 32);
    let a = hostile(
        &d,
        req::SET_MEM_TABLE,
        &mem_table_bytes(
            1,
            &[region_bytes(0, d.ram.size, d.region().userspace_addr, 0)],
        ),
        &[d.ram.fd()],
    );
    format!("{a}; {}", completions(&mut d, st.len()))
}

fn new_table_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    let st = in_flight(&mut d, 32);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    let a = hostile(
        &d,
        req::SET_MEM_TABLE,
        &mem_table_bytes(1, &[region_bytes(0, 1 << 20, UVA, 0)]),
        &[f.as_raw_fd()],
    );
    format!("{a}; {}", completions(&mut d, st.len()))
}

fn rem_mem_reg_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    let f = memfd(c"torture", 4 << 20).expect("memfd");
    let r = region_bytes(FAR, 4 << 20, UVA, 0);
    let a = reg_msg(&d, req::ADD_MEM_REG, r, &[f.as_raw_fd()]);
    // 32 reads of 64 KiB into the added region (headers and status in RAM).
    for i in 0..32u64 {
        let at = d.scratch(64);
        d.ram.write(at, &blk::header(blk::T_IN, 8 * i));
        d.ram.write(at + 32, &[STATUS_UNSET]);
        d.submit_segs(&[
            (at, 16, 0),
            (FAR + i * 65536, 65536, F_WRITE),
            (at + 32, 1, F_WRITE),
        ]);
    }
    let b = reg_msg(&d, req::REM_MEM_REG, r, &[]);
    format!(
        "add: {a}; remove under I/O: {b}; {}",
        completions(&mut d, 32)
    )
}

fn memfd_shrunk_under_data(env: &Env) -> String {
    let mut d = conn!(env);
    let keep = d.scratch(0);
    // Headers and status bytes stay in the first part; data beyond the cut.
    let mut sts = Vec::new();
    for i in 0..16u64 {
        let at = d.scratch(64);
        d.ram.write(at, &blk::header(blk::T_IN, 8 * i));
        d.ram.write(at + 32, &[STATUS_UNSET]);
        sts.push(at + 32);
        let segs = [
            (at, 16, 0),
            (0x40_0000 + i * 65536, 65536, F_WRITE),
            (at + 32, 1, F_WRITE),
        ];
        let h = d.ring.chain(&d.ram.mem, &segs);
        d.ring.stage(&d.ram.mem, h);
    }
    let _ = keep;
    // Cut everything from 4 MiB on, then publish.
    if let Err(e) = d.ram.truncate(0x40_0000) {
        return format!("cannot truncate: {e}");
    }
    d.ring.flush_avail(&d.ram.mem);
    d.kick();
    let c = completions(&mut d, 16);
    let ok = sts.iter().filter(|&&s| d.ram.u8_at(s) == blk::S_OK).count();
    format!("{c}, {ok} with status OK, {}", kept(&d))
}

fn memfd_shrunk_under_rings(env: &Env) -> String {
    let mut d = conn!(env);
    for i in 0..8u64 {
        let (segs, _) = placed(&mut d, &Request::read(8 * i, 4096));
        let h = d.ring.chain(&d.ram.mem, &segs);
        d.ring.stage(&d.ram.mem, h);
    }
    d.ring.flush_avail(&d.ram.mem);
    if let Err(e) = d.ram.truncate(0) {
        return format!("cannot truncate: {e}");
    }
    // From here on nothing of the guest RAM may be touched by us.
    d.kick();
    std::thread::sleep(Duration::from_millis(300));
    kept(&d).to_string()
}

fn disconnect_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    in_flight(&mut d, 64);
    drop(d);
    "hung up with 64 reads in flight".into()
}

fn get_vring_base_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    in_flight(&mut d, 32);
    let a = hostile(&d, req::GET_VRING_BASE, &state_bytes(0, 0), &[]);
    format!("{a}; {}", completions(&mut d, 32))
}

fn reset_device_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    in_flight(&mut d, 32);
    let a = hostile(&d, req::RESET_DEVICE, &[], &[]);
    format!("{a}; {}", completions(&mut d, 32))
}

pub(super) fn list() -> Vec<Case> {
    use Need::*;
    let slots = Protocol(P::CONFIGURE_MEM_SLOTS);
    vec![
        case!(
            "live.set-mem-table-under-io",
            Nothing,
            set_mem_table_under_io,
            "the same table again with 32 reads in flight"
        ),
        case!(
            "live.new-table-under-io",
            Nothing,
            new_table_under_io,
            "a different, smaller table with 32 reads in flight"
        ),
        case!(
            "live.rem-mem-reg-under-io",
            slots,
            rem_mem_reg_under_io,
            "REM_MEM_REG of the region 32 reads target"
        ),
        case!(
            "live.memfd-shrunk-under-data",
            Nothing,
            memfd_shrunk_under_data,
            "the memfd cut under 16 reads' buffers"
        ),
        case!(
            "live.memfd-shrunk-under-rings",
            Nothing,
            memfd_shrunk_under_rings,
            "the memfd cut to 0 under the rings, then a kick"
        ),
        case!(
            "live.disconnect-under-io",
            Nothing,
            disconnect_under_io,
            "hang up with 64 reads in flight"
        ),
        case!(
            "live.get-vring-base-under-io",
            Nothing,
            get_vring_base_under_io,
            "stop the ring with 32 reads in flight"
        ),
        case!(
            "live.reset-device-under-io",
            Protocol(P::RESET_DEVICE),
            reset_device_under_io,
            "RESET_DEVICE with 32 reads in flight"
        ),
    ]
}
