//! Unit and property tests: validation accepts only in-range requests and
//! maps every failure to IOERR or UNSUPP; header and segments round-trip.

use super::*;
use proptest::prelude::*;

const L: Limits = Limits {
    capacity: 1 << 20,
    read_only: false,
    flush: true,
    discard: true,
    write_zeroes: true,
    max_discard_sectors: 1 << 16,
    max_write_zeroes_sectors: 1 << 16,
    max_segments: 1,
};

fn h(t: u32, sector: u64) -> Header {
    Header {
        request_type: t,
        sector,
    }
}

#[test]
fn reads_and_writes_in_range() {
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_IN, 2), 0, 1024, &L),
        Ok(Request::In {
            offset: 1024,
            len: 1024
        })
    );
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_OUT, 2047), 512, 0, &L),
        Ok(Request::Out {
            offset: 2047 * 512,
            len: 512
        })
    );
}

#[test]
fn last_sector_ok_next_one_fails() {
    assert!(validate(&h(VIRTIO_BLK_T_IN, 2047), 0, 512, &L).is_ok());
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_IN, 2048), 0, 512, &L)
            .unwrap_err()
            .status,
        VIRTIO_BLK_S_IOERR
    );
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_IN, 2047), 0, 1024, &L)
            .unwrap_err()
            .status,
        VIRTIO_BLK_S_IOERR
    );
}

#[test]
fn overflowing_sector_is_ioerr() {
    for s in [u64::MAX, u64::MAX / 512, u64::MAX / 512 + 1] {
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_OUT, s), 512, 0, &L)
                .unwrap_err()
                .status,
            VIRTIO_BLK_S_IOERR
        );
    }
}

#[test]
fn wrong_direction_and_partial_sector() {
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_IN, 0), 512, 512, &L)
            .unwrap_err()
            .status,
        1
    );
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_OUT, 0), 512, 512, &L)
            .unwrap_err()
            .status,
        1
    );
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_OUT, 0), 100, 0, &L)
            .unwrap_err()
            .status,
        1
    );
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_IN, 0), 0, 513, &L)
            .unwrap_err()
            .status,
        1
    );
}

#[test]
fn read_only_refuses_writes_but_reads() {
    let ro = Limits {
        read_only: true,
        ..L
    };
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_OUT, 0), 512, 0, &ro)
            .unwrap_err()
            .status,
        1
    );
    assert!(validate(&h(VIRTIO_BLK_T_IN, 0), 0, 512, &ro).is_ok());
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_DISCARD, 0), 16, 0, &ro)
            .unwrap_err()
            .status,
        1
    );
}

#[test]
fn unknown_types_unsupp() {
    for t in [2, 3, 5, 7, 9, 10, 12, 14, 0xffff_ffff] {
        assert_eq!(
            validate(&h(t, 0), 0, 0, &L).unwrap_err().status,
            VIRTIO_BLK_S_UNSUPP
        );
    }
    let nf = Limits {
        flush: false,
        discard: false,
        ..L
    };
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_FLUSH, 0), 0, 0, &nf)
            .unwrap_err()
            .status,
        2
    );
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_DISCARD, 0), 16, 0, &nf)
            .unwrap_err()
            .status,
        2
    );
}

#[test]
fn get_id_truncates_to_20() {
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_GET_ID, 0), 0, 64, &L),
        Ok(Request::GetId { len: 20 })
    );
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_GET_ID, 0), 0, 8, &L),
        Ok(Request::GetId { len: 8 })
    );
}

#[test]
fn segments() {
    let s = Segment {
        sector: 8,
        num_sectors: 8,
        flags: 0,
    };
    assert_eq!(Segment::parse(&s.to_bytes()), s);
    assert_eq!(s.check(true, &L), Ok((4096, 4096)));
    let bad = Segment { flags: 1, ..s };
    assert_eq!(bad.check(true, &L).unwrap_err().status, VIRTIO_BLK_S_UNSUPP);
    assert!(bad.check(false, &L).is_ok());
    let past = Segment {
        sector: 2047,
        num_sectors: 2,
        flags: 0,
    };
    assert_eq!(
        past.check(false, &L).unwrap_err().status,
        VIRTIO_BLK_S_IOERR
    );
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_DISCARD, 0), 32, 0, &L)
            .unwrap_err()
            .status,
        2
    );
    assert_eq!(
        validate(&h(VIRTIO_BLK_T_DISCARD, 0), 15, 0, &L)
            .unwrap_err()
            .status,
        1
    );
}

proptest! {
    /// Whatever the header and lengths, validation never panics, and an
    /// accepted IN/OUT lies entirely inside the disk.
    #[test]
    fn validation_is_total_and_in_bounds(t in 0u32..16, sector: u64, r in 0u64..1<<33, w in 0u64..1<<33, ro: bool) {
        let lim = Limits { read_only: ro, ..L };
        match validate(&h(t, sector), r, w, &lim) {
            Ok(Request::In { offset, len }) | Ok(Request::Out { offset, len }) => {
                prop_assert!(offset + len <= lim.capacity);
                prop_assert_eq!(len % 512, 0);
                prop_assert_eq!(offset, sector * 512);
            }
            Ok(_) => {}
            Err(rej) => prop_assert!(rej.status == VIRTIO_BLK_S_IOERR || rej.status == VIRTIO_BLK_S_UNSUPP),
        }
    }

    #[test]
    fn header_roundtrip(t: u32, sector: u64) {
        let hd = h(t, sector);
        prop_assert_eq!(Header::parse(&hd.to_bytes()), hd);
    }

    #[test]
    fn segment_check_in_bounds(sector: u64, n: u32, flags: u32, discard: bool) {
        let s = Segment { sector, num_sectors: n, flags };
        if let Ok((off, len)) = s.check(discard, &L) {
            prop_assert!(off.checked_add(len).unwrap() <= L.capacity);
        }
    }
}
