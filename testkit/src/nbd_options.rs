//! The data of a client's NBD options, encoded: for the raw client and for
//! the server's own option-decoding tests (no engine type, no socket, so
//! the engine's unit tests use it on every platform).

/// Data of `NBD_OPT_GO` / `NBD_OPT_INFO`.
pub fn go_data(name: &str, requests: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(requests.len() as u16).to_be_bytes());
    for r in requests {
        d.extend_from_slice(&r.to_be_bytes());
    }
    d
}

/// Data of `NBD_OPT_{LIST,SET}_META_CONTEXT`.
pub fn meta_query(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        d.extend_from_slice(&(q.len() as u32).to_be_bytes());
        d.extend_from_slice(q.as_bytes());
    }
    d
}
