//! SET_MEM_TABLE tables that overlap, overflow, or point past their files.

use super::*;

fn table_msg(d: &Driver, num: u32, regions: &[[u8; 32]], fds: &[RawFd]) -> String {
    hostile(d, req::SET_MEM_TABLE, &mem_table_bytes(num, regions), fds)
}

fn mem_overlap(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    let r = [
        region_bytes(0, 8192, UVA, 0),
        region_bytes(4096, 8192, UVA + 0x10_0000, 0),
    ];
    table_msg(&d, 2, &r, &[f.as_raw_fd(), f.as_raw_fd()])
}

fn mem_past_eof(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(&d, 1, &[region_bytes(0, 4 << 20, UVA, 0)], &[f.as_raw_fd()])
}

fn mem_offset_past_eof(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(
        &d,
        1,
        &[region_bytes(0, 4096, UVA, 1 << 20)],
        &[f.as_raw_fd()],
    )
}

fn mem_offset_overflow(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(
        &d,
        1,
        &[region_bytes(0, 8192, UVA, u64::MAX - 4095)],
        &[f.as_raw_fd()],
    )
}

fn mem_gpa_overflow(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(
        &d,
        1,
        &[region_bytes(u64::MAX - 4095, 8192, UVA, 0)],
        &[f.as_raw_fd()],
    )
}

fn mem_uva_overflow(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(
        &d,
        1,
        &[region_bytes(0, 8192, u64::MAX - 4095, 0)],
        &[f.as_raw_fd()],
    )
}

fn mem_zero_size(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(&d, 1, &[region_bytes(0, 0, UVA, 0)], &[f.as_raw_fd()])
}

fn mem_empty_table(env: &Env) -> String {
    let d = bare!(env);
    table_msg(&d, 0, &[], &[])
}

fn mem_too_many_regions(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    let regions: Vec<_> = (0..9u64)
        .map(|i| region_bytes(i << 20, 4096, UVA + (i << 20), 0))
        .collect();
    let fds = vec![f.as_raw_fd(); 9];
    table_msg(&d, 9, &regions, &fds)
}

fn mem_count_mismatch(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(&d, 4, &[region_bytes(0, 4096, UVA, 0)], &[f.as_raw_fd()])
}

fn mem_no_fd(env: &Env) -> String {
    let d = bare!(env);
    table_msg(&d, 1, &[region_bytes(0, 4096, UVA, 0)], &[])
}

fn mem_fd_not_mappable(env: &Env) -> String {
    let d = bare!(env);
    let e = EventFd::new(0).expect("eventfd");
    table_msg(&d, 1, &[region_bytes(0, 4096, UVA, 0)], &[e.as_raw_fd()])
}

fn mem_read_only_fd(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    let ro = std::fs::File::open(format!("/proc/self/fd/{}", f.as_raw_fd())).expect("reopen");
    table_msg(
        &d,
        1,
        &[region_bytes(0, 1 << 20, UVA, 0)],
        &[ro.as_raw_fd()],
    )
}

fn mem_same_uva_twice(env: &Env) -> String {
    let mut d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    let main = d.region();
    let r = [
        region_bytes(0, d.ram.size, main.userspace_addr, 0),
        region_bytes(1 << 32, 1 << 20, main.userspace_addr, 0),
    ];
    let a = table_msg(&d, 2, &r, &[d.ram.fd(), f.as_raw_fd()]);
    let s = d.start_ring(0).map_or_else(
        |e| format!("ring refused: {e}"),
        |()| {
            let (segs, st) = placed(&mut d, &Request::get_id(20));
            d.submit_segs(&segs);
            observe(&mut d, Some(st))
        },
    );
    format!("{a}; {s}")
}

pub(super) fn list() -> Vec<Case> {
    use Need::*;
    vec![
        case!(
            "mem.overlap",
            Nothing,
            mem_overlap,
            "two regions overlapping in guest space"
        ),
        case!(
            "mem.past-eof",
            Nothing,
            mem_past_eof,
            "a 4 MiB region of a 1 MiB memfd"
        ),
        case!(
            "mem.offset-past-eof",
            Nothing,
            mem_offset_past_eof,
            "mmap offset at the end of the file"
        ),
        case!(
            "mem.offset-overflow",
            Nothing,
            mem_offset_overflow,
            "mmap offset + size overflows"
        ),
        case!(
            "mem.gpa-overflow",
            Nothing,
            mem_gpa_overflow,
            "guest address + size overflows"
        ),
        case!(
            "mem.uva-overflow",
            Nothing,
            mem_uva_overflow,
            "user address + size overflows"
        ),
        case!(
            "mem.zero-size",
            Nothing,
            mem_zero_size,
            "a zero-size region"
        ),
        case!(
            "mem.empty-table",
            Nothing,
            mem_empty_table,
            "a table of no regions"
        ),
        case!(
            "mem.too-many-regions",
            Nothing,
            mem_too_many_regions,
            "9 regions (the message holds 8)"
        ),
        case!(
            "mem.count-mismatch",
            Nothing,
            mem_count_mismatch,
            "num_regions 4, one region sent"
        ),
        case!(
            "mem.no-fd",
            Nothing,
            mem_no_fd,
            "a region without a file descriptor"
        ),
        case!(
            "mem.fd-not-mappable",
            Nothing,
            mem_fd_not_mappable,
            "an eventfd as guest memory"
        ),
        case!(
            "mem.read-only-fd",
            Nothing,
            mem_read_only_fd,
            "a read-only descriptor of the memfd"
        ),
        case!(
            "mem.same-uva-twice",
            Nothing,
            mem_same_uva_twice,
            "two regions at one user address, then I/O"
        ),
    ]
}
