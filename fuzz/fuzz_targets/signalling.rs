//! Any text a WebSocket frame can carry, given to the signalling parser: it
//! never panics, and a refusal has one of the parse-level codes of
//! docs/protocol.md §6 and a short message (it is sent back to the client).
#![no_main]

use convene_meeting::protocol::{parse_client_message, ErrorCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 (the WebSocket layer checks); binary ones are refused
    // before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = parse_client_message(text) {
        assert!(
            matches!(
                e.code,
                ErrorCode::BadJson | ErrorCode::Invalid | ErrorCode::UnknownType
            ),
            "{:?}",
            e.code
        );
        assert!(e.message.chars().count() <= 400, "{}", e.message);
    }
});
