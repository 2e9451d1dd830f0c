use super::*;

fn one(json: &str) -> Result<Item, PublishError> {
    parse_items_json(format!(r#"{{"items":[{json}]}}"#).as_bytes()).map(|mut v| v.remove(0))
}

#[test]
fn formats_layout() {
    let item = one(r#"{"channel":"news","id":"2","prev-id":"1","meta":{"sender":"a"},
        "formats":{"http-stream":{"content":"hello\n"},"http-response":{"code":201,"reason":"Made","headers":{"X-A":"1"},"body":"done"}}}"#)
    .unwrap();
    assert_eq!(item.channel, "news");
    assert_eq!(
        (item.id.as_deref(), item.prev_id.as_deref()),
        (Some("2"), Some("1"))
    );
    assert_eq!(item.meta, vec![("sender".into(), "a".into())]);
    assert_eq!(
        item.formats.http_stream,
        Some(HttpStream {
            action: Action::Send,
            content: Bytes::from_static(b"hello\n"),
            content_filters: None,
        })
    );
    let r = item.formats.http_response.unwrap();
    assert_eq!(
        (r.code, r.reason.as_deref(), &r.body[..]),
        (Some(201), Some("Made"), &b"done"[..])
    );
    assert_eq!(r.headers, vec![("X-A".into(), Bytes::from_static(b"1"))]);
}

#[test]
fn content_filters() {
    let item = one(
        r#"{"channel":"c","http-stream":{"content":"id: %I\n","content-filters":["build-id"]}}"#,
    )
    .unwrap();
    assert_eq!(
        item.formats.http_stream.unwrap().content_filters,
        Some(vec!["build-id".to_owned()])
    );
}

#[test]
fn flat_layout_and_binary() {
    let item = one(r#"{"channel":"c","http-stream":{"content-bin":"aGk="},"http-response":{"body-bin":"AAE=","headers":[["A","1"]]}}"#).unwrap();
    assert_eq!(
        item.formats.http_stream.unwrap().content,
        Bytes::from_static(b"hi")
    );
    assert_eq!(
        item.formats.http_response.unwrap().body,
        Bytes::from_static(&[0, 1])
    );
}

#[test]
fn actions_and_ws() {
    let item = one(r#"{"channel":"c","formats":{"http-stream":{"action":"close"},"ws-message":{"content-bin":"AA=="}}}"#).unwrap();
    assert_eq!(item.formats.http_stream.unwrap().action, Action::Close);
    let ws = item.formats.ws_message.unwrap();
    assert_eq!(
        (ws.kind, &ws.content[..]),
        (WsMessageType::Binary, &[0u8][..])
    );
    let item = one(
        r#"{"channel":"c","formats":{"ws-message":{"action":"close","code":4000,"reason":"bye"}}}"#,
    )
    .unwrap();
    let ws = item.formats.ws_message.unwrap();
    assert_eq!(
        (ws.action, ws.code, ws.reason.as_deref()),
        (Action::Close, Some(4000), Some("bye"))
    );
}

#[test]
fn tnetstring_item() {
    let value = Value::Map(vec![
        (b"channel".to_vec(), Value::Bytes(b"c".to_vec())),
        (
            b"formats".to_vec(),
            Value::Map(vec![(
                b"http-stream".to_vec(),
                Value::Map(vec![(b"content".to_vec(), Value::Bytes(vec![0xff, 0]))]),
            )]),
        ),
    ]);
    let item = parse_item_tnetstring(&tnetstring::to_vec(&value)).unwrap();
    assert_eq!(
        item.formats.http_stream.unwrap().content,
        Bytes::from_static(&[0xff, 0])
    );
}

#[test]
fn malformed() {
    let bad = |json: &str| parse_items_json(json.as_bytes()).unwrap_err().to_string();
    assert!(bad("{").starts_with("Body is not valid JSON"));
    assert_eq!(
        bad("[]"),
        "Invalid format: expected an object with an \"items\" list"
    );
    assert_eq!(
        bad(r#"{"items":{}}"#),
        "Invalid format: expected an object with an \"items\" list"
    );
    assert_eq!(
        bad(r#"{"items":[1]}"#),
        "Invalid format: item 0 is not an object"
    );
    assert_eq!(
        bad(r#"{"items":null}"#),
        "Invalid format: expected an object with an \"items\" list"
    );
    let too_many = format!(
        r#"{{"items":[{}]}}"#,
        vec![r#"{"channel":"c","http-stream":{"content":"x"}}"#; MAX_ITEMS + 1].join(",")
    );
    assert_eq!(bad(&too_many), "Invalid format: more than 1000 items");
    let just_enough = format!(
        r#"{{"other":[1,2],"items":[{}]}}"#,
        vec![r#"{"channel":"c","http-stream":{"content":"x"}}"#; MAX_ITEMS].join(",")
    );
    assert_eq!(
        parse_items_json(just_enough.as_bytes()).unwrap().len(),
        MAX_ITEMS
    );
    // A syntax error after the limit is still a syntax error... of the list
    // cut short: refused either way.
    assert!(
        bad(r#"{"items":[{"channel":"c","http-stream":{"content":"x"}},]}"#)
            .starts_with("Body is not valid JSON")
    );
    assert_eq!(
        bad(r#"{"items":[{"formats":{"http-stream":{"content":"x"}}}]}"#),
        "Invalid format: item 0: missing \"channel\""
    );
    assert_eq!(
        bad(r#"{"items":[{"channel":""}]}"#),
        "Invalid format: item 0: missing \"channel\""
    );
    assert_eq!(
        bad(r#"{"items":[{"channel":"c"}]}"#),
        "Invalid format: item 0: no format (http-response, http-stream or ws-message)"
    );
    let cases = [
        (
            r#"{"channel":5,"http-stream":{"content":"x"}}"#,
            "channel: must be a string",
        ),
        (
            r#"{"channel":"c","formats":[]}"#,
            "formats: must be an object",
        ),
        (
            r#"{"channel":"c","http-stream":"x"}"#,
            "http-stream: must be an object",
        ),
        (
            r#"{"channel":"c","http-stream":{}}"#,
            "http-stream.content: is required",
        ),
        (
            r#"{"channel":"c","http-stream":{"content-bin":"***"}}"#,
            "http-stream.content-bin: must be base64",
        ),
        (
            r#"{"channel":"c","http-stream":{"content":"x","action":"explode"}}"#,
            "http-stream.action: must be send",
        ),
        (
            r#"{"channel":"c","http-response":{"code":1000}}"#,
            "http-response.code: must be a status code from 100 to 599",
        ),
        (
            r#"{"channel":"c","http-response":{"code":0}}"#,
            "http-response.code: must be a status code from 100 to 599",
        ),
        (
            r#"{"channel":"c","http-response":{"code":99}}"#,
            "http-response.code: must be a status code from 100 to 599",
        ),
        (
            r#"{"channel":"c","http-response":{"code":"200"}}"#,
            "http-response.code: must be a status code",
        ),
        (
            r#"{"channel":"c","http-response":{"reason":"OK\r\nX-Evil: 1"}}"#,
            "http-response.reason: must be one line of visible text",
        ),
        (
            r#"{"channel":"c","http-response":{"headers":{"Bad Name":"1"}}}"#,
            "http-response.headers: \"Bad Name\" is not a valid header name",
        ),
        (
            r#"{"channel":"c","http-response":{"headers":[["X-A","1\r\nX-Evil: 1"]]}}"#,
            "http-response.headers: \"X-A\" has a value with a control character",
        ),
        (
            r#"{"channel":"c","http-response":{"headers":{"":"1"}}}"#,
            "http-response.headers: \"\" is not a valid header name",
        ),
        (
            r#"{"channel":"c","http-response":{"headers":[["A"]]}}"#,
            "http-response.headers: must be [name, value]",
        ),
        (
            r#"{"channel":"c","http-response":{"headers":5}}"#,
            "http-response.headers: must be an object or a list",
        ),
        (
            r#"{"channel":"c","http-response":{"body-bin":"!"}}"#,
            "http-response.body-bin: must be base64",
        ),
        (
            r#"{"channel":"c","ws-message":{"type":"smoke"}}"#,
            "ws-message.type: must be text",
        ),
        (
            r#"{"channel":"c","meta":{"a":1},"http-stream":{"content":"x"}}"#,
            "meta: must map strings to strings",
        ),
        (
            r#"{"channel":"c","no-seq":"yes","http-stream":{"content":"x"}}"#,
            "no-seq: must be true or false",
        ),
        (
            r#"{"channel":"c","id":7,"http-stream":{"content":"x"}}"#,
            "id: must be a string",
        ),
        (
            r#"{"channel":"c","http-stream":{"content":"x","content-filters":"build-id"}}"#,
            "http-stream.content-filters: must be a list of strings",
        ),
        (
            r#"{"channel":"c","http-response":{"content-filters":[1]}}"#,
            "http-response.content-filters: must be a list of strings",
        ),
    ];
    for (item, expected) in cases {
        let message = one(item).unwrap_err().to_string();
        assert!(message.contains(expected), "{item}: {message}");
        assert!(message.starts_with("Invalid format: item 0: "), "{message}");
    }
    let many = format!(
        r#"{{"items":[{}]}}"#,
        vec![r#"{"channel":"c","http-stream":{"content":"x"}}"#; MAX_ITEMS + 1].join(",")
    );
    assert_eq!(
        bad(&many),
        format!("Invalid format: more than {MAX_ITEMS} items")
    );
    assert!(parse_item_tnetstring(b"3:abc").is_err());
    assert_eq!(
        parse_item_tnetstring(b"1:x,").unwrap_err(),
        PublishError::NotAnObject(0)
    );
}

#[test]
fn purge_lists() {
    let item = one(r#"{"channel":"c","purge":["k1","k2"],"http-stream":{"content":"x"}}"#).unwrap();
    assert_eq!(
        item.purge,
        Some(Purge {
            keys: vec!["k1".into(), "k2".into()],
            urls: vec![],
            soft: false
        })
    );
    let item = one(
        r#"{"channel":"c","purge":{"urls":["https://example.com/counter/1"],"soft":true},"http-stream":{"content":"x"}}"#,
    )
    .unwrap();
    let purge = item.purge.unwrap();
    assert_eq!(purge.urls, ["https://example.com/counter/1"]);
    assert!(purge.soft);
    assert_eq!(
        one(r#"{"channel":"c","http-stream":{"content":"x"}}"#)
            .unwrap()
            .purge,
        None
    );
    let bad = |json: &str, expected: &str| {
        let err = one(json).unwrap_err().to_string();
        assert!(err.contains(expected), "{json}: {err}");
    };
    bad(
        r#"{"channel":"c","purge":"k","http-stream":{"content":"x"}}"#,
        "purge: must be a list of keys or an object",
    );
    bad(
        r#"{"channel":"c","purge":[1],"http-stream":{"content":"x"}}"#,
        "purge: must be a list",
    );
    bad(
        r#"{"channel":"c","purge":["a b"],"http-stream":{"content":"x"}}"#,
        "without spaces",
    );
    bad(
        r#"{"channel":"c","purge":{"urls":["/relative"]},"http-stream":{"content":"x"}}"#,
        "absolute",
    );
    bad(
        r#"{"channel":"c","purge":{"urls":["http:///x"]},"http-stream":{"content":"x"}}"#,
        "absolute",
    );
    bad(
        r#"{"channel":"c","purge":{"soft":"yes","keys":["k"]},"http-stream":{"content":"x"}}"#,
        "purge.soft",
    );
    bad(
        r#"{"channel":"c","purge":{},"http-stream":{"content":"x"}}"#,
        "names no keys",
    );
    let many: Vec<String> = (0..300).map(|i| format!("\"k{i}\"")).collect();
    bad(
        &format!(
            r#"{{"channel":"c","purge":[{}],"http-stream":{{"content":"x"}}}}"#,
            many.join(",")
        ),
        "more than 256",
    );
}

mod round_trip {
    //! Every valid item survives `encode_item_frame` then `parse_item_frame`
    //! unchanged: what crosses the bus is what was accepted.
    use super::*;
    use proptest::prelude::*;

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.-]{1,12}"
    }

    fn any_bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            Just(Action::Send),
            Just(Action::Hint),
            Just(Action::Close),
            Just(Action::Refresh)
        ]
    }

    fn filters() -> impl Strategy<Value = Option<Vec<String>>> {
        proptest::option::of(proptest::collection::vec(token(), 0..3))
    }

    fn header_value() -> impl Strategy<Value = Bytes> {
        // Visible bytes, tab and bytes past ASCII (TNetString inputs may carry them).
        proptest::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..20)
            .prop_map(Bytes::from)
    }

    fn item() -> impl Strategy<Value = Item> {
        let response = (
            action(),
            proptest::option::of(100u16..600),
            proptest::option::of("[A-Za-z ]{1,10}"),
            proptest::collection::vec(("[A-Za-z-]{1,10}", header_value()), 0..3),
            any_bytes(),
            filters(),
        )
            .prop_map(
                |(action, code, reason, headers, body, content_filters)| HttpResponse {
                    action,
                    code,
                    reason,
                    headers,
                    body,
                    content_filters,
                },
            );
        let stream =
            (action(), any_bytes(), filters()).prop_map(|(action, content, f)| HttpStream {
                action,
                content,
                content_filters: f,
            });
        let ws = (
            action(),
            prop_oneof![
                Just(WsMessageType::Text),
                Just(WsMessageType::Binary),
                Just(WsMessageType::Ping),
                Just(WsMessageType::Pong)
            ],
            any_bytes(),
            proptest::option::of(0u16..5000),
            proptest::option::of("[a-z ]{0,10}"),
        )
            .prop_map(|(action, kind, content, code, reason)| WsMessage {
                action,
                kind,
                content,
                code,
                reason,
            });
        let purge = proptest::option::of(
            (
                proptest::collection::vec(token(), 1..3),
                proptest::collection::vec(token().prop_map(|h| format!("https://{h}/p")), 0..2),
                any::<bool>(),
            )
                .prop_map(|(keys, urls, soft)| Purge { keys, urls, soft }),
        );
        (
            "[^\u{0}]{1,20}",
            proptest::option::of(token()),
            proptest::option::of(token()),
            proptest::collection::vec((token(), "[^\u{0}]{0,8}"), 0..3),
            any::<bool>(),
            (
                proptest::option::of(response),
                proptest::option::of(stream),
                proptest::option::of(ws),
            ),
            purge,
        )
            .prop_filter("an item carries a format", |(.., (r, s, w), _)| {
                r.is_some() || s.is_some() || w.is_some()
            })
            .prop_map(
                |(channel, id, prev_id, meta, no_seq, (r, s, w), purge)| Item {
                    channel,
                    id,
                    prev_id,
                    meta,
                    no_seq,
                    formats: Format {
                        http_response: r,
                        // A stream send always carries content (maybe empty).
                        http_stream: s,
                        ws_message: w,
                    },
                    purge,
                },
            )
    }

    proptest! {
        #[test]
        fn encode_then_parse_is_identity(item in item()) {
            let frame = encode_item_frame(&item);
            prop_assert_eq!(parse_item_frame(&frame, None).unwrap(), item);
        }
    }
}
