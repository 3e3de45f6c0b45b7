//! VERSION, the first message of every connection: the client's proposal
//! checked, and the reply with our capabilities (the [`Limits`]).

use std::io;

use super::{einval, Limits, Session};
use crate::proto::{self, size, Reader};
use crate::refuse;

/// The capabilities JSON of the VERSION reply, with its NUL.
fn capabilities(l: &Limits) -> Vec<u8> {
    // Migration is absent: none is offered.
    let v = serde_json::json!({
        "capabilities": {
            "max_msg_fds": l.max_msg_fds,
            "max_data_xfer_size": l.max_data_xfer_size,
            "max_dma_maps": l.max_dma_maps,
        }
    });
    let mut b = v.to_string().into_bytes();
    b.push(0);
    b
}

impl Session {
    pub(super) fn version(&mut self, p: &[u8]) -> io::Result<Vec<u8>> {
        if self.negotiated {
            return Err(einval("a second VERSION"));
        }
        if p.len() < size::VERSION_MIN {
            return Err(einval(format!("VERSION: payload of {} bytes", p.len())));
        }
        let mut r = Reader::new(p);
        let major = r.u16().unwrap_or(u16::MAX);
        let minor = r.u16().unwrap_or(0);
        // "version data ... (including terminating NUL). Optional."
        let data = r.rest();
        if !data.is_empty() {
            let Some((&0, json)) = data.split_last() else {
                return Err(einval("VERSION data without its terminating NUL"));
            };
            if json.contains(&0) {
                return Err(einval("VERSION data with a NUL inside"));
            }
            let v: serde_json::Value = serde_json::from_slice(json)
                .map_err(|e| einval(format!("VERSION data is not JSON: {e}")))?;
            let ok = v.as_object().is_some_and(|o| {
                o.get("capabilities")
                    .is_none_or(serde_json::Value::is_object)
            });
            if !ok {
                return Err(einval("VERSION capabilities are not a JSON object"));
            }
        }
        // "The major version in the reply must be the same as proposed":
        // we only speak 0.
        if major != 0 {
            return Err(refuse(
                libc::ENOTSUP,
                format!("protocol {major}.{minor}; this server speaks 0.0"),
            ));
        }
        log::debug!("vfio-user: client protocol {major}.{minor}");
        self.negotiated = true;
        let mut w = proto::Writer::default();
        // "The minor version in the reply must be equal to or less than the
        // minor version proposed."
        w.u16(0).u16(0).bytes(&capabilities(&self.limits));
        Ok(w.b)
    }
}
