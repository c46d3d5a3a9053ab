//! A Graph collection page on arbitrary bytes (a response body is untrusted input), and the
//! `@odata.nextLink` checks of the pager on whatever link the page carries.
//!
//! Never panics; an unusable body is an error with a message; and for a parsed page:
//! - the body is the bytes sent, less a leading BOM; every record is an exact, in-bounds,
//!   increasing slice of it holding a JSON object;
//! - the records are the `value` array, in order (checked against serde_json's own tree);
//! - a next link is followed only to the Graph origin, without credentials, and only once.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use m365_connector::graph::paging::{Page, Pager};
use m365_connector::graph::{GraphError, RequestIds};
use url::Url;

/// The Graph roots the connector talks to: the real one and the simulator's loopback.
const GRAPH_ROOTS: [&str; 2] = ["https://graph.microsoft.com", "http://127.0.0.1:8400"];

fuzz_target!(|data: &[u8]| {
    let page = match Page::parse(Bytes::copy_from_slice(data), RequestIds::default()) {
        Ok(p) => p,
        Err((problem, _)) => {
            assert!(!problem.is_empty(), "an error without a message");
            return;
        }
    };
    // The body is what Graph sent, less a leading byte order mark.
    let body = &page.body[..];
    assert!(data.ends_with(body) && data.len() - body.len() <= 3);
    let mut end = 0;
    for (i, range) in page.records.iter().enumerate() {
        assert!(
            range.start >= end && range.end <= body.len(),
            "record {i} out of place"
        );
        end = range.end;
        let record = page.record(i);
        assert_eq!(record, &body[range.clone()]);
        assert_eq!(record.first(), Some(&b'{'));
        assert_eq!(record.last(), Some(&b'}'));
    }
    // serde_json's tree may refuse what the borrowed parse accepts (numbers out of f64
    // range): compare only when it parses.
    if let Ok(tree) = serde_json::from_slice::<serde_json::Value>(body) {
        let values = tree["value"]
            .as_array()
            .expect("a page without a value array");
        assert_eq!(
            values.len(),
            page.len(),
            "record count differs from `value`"
        );
        for (i, v) in values.iter().enumerate() {
            let mine: serde_json::Value =
                serde_json::from_slice(page.record(i)).expect("a record that is not JSON");
            assert_eq!(&mine, v, "record {i} differs from `value`[{i}]");
        }
        assert_eq!(
            tree.get("@odata.nextLink").and_then(|l| l.as_str()),
            page.next_link.as_deref()
        );
    }

    let Some(link) = page.next_link.as_deref() else {
        return;
    };
    for root in GRAPH_ROOTS {
        let graph = Url::parse(root).unwrap();
        let first = graph.join("/v1.0/users?$top=999").unwrap();
        let mut pager = Pager::new(first.clone(), &graph);
        match pager.check_link(link, &RequestIds::default()) {
            Ok(url) => {
                assert_eq!(url.scheme(), graph.scheme(), "{link}");
                assert_eq!(url.host_str(), graph.host_str(), "{link}");
                assert_eq!(url.port_or_known_default(), graph.port_or_known_default());
                assert!(url.username().is_empty(), "user name in {link}");
                assert!(url.password().is_none(), "password in {link}");
                assert_ne!(link, first.as_str(), "the first link followed again");
                // The same link again is a loop.
                assert!(matches!(
                    pager.check_link(link, &RequestIds::default()),
                    Err(GraphError::NextLinkLoop { .. })
                ));
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
});
