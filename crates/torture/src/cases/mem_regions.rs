//! ADD_MEM_REG / REM_MEM_REG: overlaps, unknown regions, slot limits.

use super::*;

fn reg_add_overlap(env: &Env) -> String {
    let d = conn!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    reg_msg(
        &d,
        req::ADD_MEM_REG,
        region_bytes(0x1000, 4096, UVA, 0),
        &[f.as_raw_fd()],
    )
}

fn reg_add_past_eof(env: &Env) -> String {
    let d = conn!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    reg_msg(
        &d,
        req::ADD_MEM_REG,
        region_bytes(FAR, 2 << 20, UVA, 0),
        &[f.as_raw_fd()],
    )
}

fn reg_add_no_fd(env: &Env) -> String {
    let d = conn!(env);
    reg_msg(&d, req::ADD_MEM_REG, region_bytes(FAR, 4096, UVA, 0), &[])
}

fn reg_rem_unknown(env: &Env) -> String {
    let d = conn!(env);
    reg_msg(&d, req::REM_MEM_REG, region_bytes(FAR, 4096, UVA, 0), &[])
}

fn reg_rem_twice(env: &Env) -> String {
    let d = conn!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    let r = region_bytes(FAR, 1 << 20, UVA, 0);
    let a = reg_msg(&d, req::ADD_MEM_REG, r, &[f.as_raw_fd()]);
    let b = reg_msg(&d, req::REM_MEM_REG, r, &[]);
    let c = reg_msg(&d, req::REM_MEM_REG, r, &[]);
    format!("add: {a}; remove: {b}; again: {c}")
}

fn reg_past_max_slots(env: &Env) -> String {
    let mut d = conn!(env);
    let max = d.fe().get_max_mem_slots().unwrap_or(0).min(1024);
    let f = memfd(c"torture", 4096).expect("memfd");
    let mut refused_at = None;
    for i in 1..=max {
        let mut body = 0u64.to_le_bytes().to_vec();
        body.extend_from_slice(&region_bytes(FAR + i * 4096, 4096, UVA + i * 4096, 0));
        match d
            .raw
            .call(req::ADD_MEM_REG, d.acks(), &body, &[f.as_raw_fd()])
        {
            Some(Reply::Closed) => return format!("dropped the connection at region {}", i + 1),
            Some(r) if r.u64() != Some(0) => {
                refused_at = Some(i + 1);
                break;
            }
            _ => {}
        }
    }
    let what = match refused_at {
        Some(n) => format!("{max} slots, region {n} refused"),
        None => format!("{max} slots, all {} regions accepted", max + 1),
    };
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    d.submit_segs(&segs);
    format!("{what}; I/O: {}", observe(&mut d, Some(st)))
}

fn reg_remove_ram_under_ring(env: &Env) -> String {
    let mut d = conn!(env);
    let r = d.region();
    let a = reg_msg(
        &d,
        req::REM_MEM_REG,
        region_bytes(r.guest_phys_addr, r.memory_size, r.userspace_addr, 0),
        &[],
    );
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    d.submit_segs(&segs);
    format!("{a}; I/O: {}", observe(&mut d, Some(st)))
}

pub(super) fn list() -> Vec<Case> {
    use Need::*;
    let slots = Protocol(P::CONFIGURE_MEM_SLOTS);
    vec![
        case!(
            "memreg.add-overlap",
            slots,
            reg_add_overlap,
            "ADD_MEM_REG overlapping the RAM"
        ),
        case!(
            "memreg.add-past-eof",
            slots,
            reg_add_past_eof,
            "ADD_MEM_REG past the end of its file"
        ),
        case!(
            "memreg.add-no-fd",
            slots,
            reg_add_no_fd,
            "ADD_MEM_REG without a descriptor"
        ),
        case!(
            "memreg.remove-unknown",
            slots,
            reg_rem_unknown,
            "REM_MEM_REG of a region never added"
        ),
        case!(
            "memreg.remove-twice",
            slots,
            reg_rem_twice,
            "add, remove, remove again"
        ),
        case!(
            "memreg.past-max-slots",
            slots,
            reg_past_max_slots,
            "ADD_MEM_REG until GET_MAX_MEM_SLOTS + 1"
        ),
        case!(
            "memreg.remove-ram-under-ring",
            slots,
            reg_remove_ram_under_ring,
            "REM_MEM_REG of the RAM holding the ring, then a kick"
        ),
    ]
}
