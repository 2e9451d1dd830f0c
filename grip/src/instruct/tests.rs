use super::*;
use http::HeaderValue;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn parse(pairs: &[(&'static str, &str)]) -> Result<Instruct, InstructError> {
    Instruct::from_headers(&headers(pairs))
}

#[test]
fn defaults_without_instructions() {
    let i = parse(&[("grip-channel", "news")]).unwrap();
    assert_eq!(i.hold, None);
    assert_eq!(i.timeout, DEFAULT_TIMEOUT);
    assert_eq!(
        i.channels,
        vec![Channel {
            name: "news".into(),
            prev_id: None,
            filters: vec![]
        }]
    );
}

#[test]
fn full_header_set() {
    let i = parse(&[
        ("grip-hold", "stream"),
        ("grip-channel", "a; prev-id=1; filter=skip-self, b"),
        ("grip-channel", "c; filter=f1; filter=f2"),
        ("grip-timeout", "2"),
        (
            "grip-keep-alive",
            "\\x3a ping\\n; format=cstring; timeout=20; mode=interval",
        ),
        ("grip-set-meta", "user=alice, id_format=\"x,y\""),
        ("grip-status", "304 Not Modified"),
        ("grip-expose-headers", "Content-Type, ETag"),
        (
            "grip-link",
            "</next?x=1>; rel=next; timeout=30, </gone>; rel=gone",
        ),
    ])
    .unwrap();
    assert_eq!(i.hold, Some(HoldMode::Stream));
    assert_eq!(i.channels.len(), 3);
    assert_eq!(i.channels[0].prev_id.as_deref(), Some("1"));
    assert_eq!(i.channels[0].filters, vec!["skip-self"]);
    assert_eq!(i.channels[2].filters, vec!["f1", "f2"]);
    assert_eq!(i.timeout, MIN_TIMEOUT, "timeouts below 5 are raised to 5");
    let ka = i.keep_alive.unwrap();
    assert_eq!(
        (&ka.data[..], ka.timeout, ka.mode),
        (&b": ping\n"[..], 20, KeepAliveMode::Interval)
    );
    assert_eq!(
        i.meta,
        vec![
            ("user".into(), "alice".into()),
            ("id_format".into(), "x,y".into())
        ]
    );
    assert_eq!(i.status, Some((304, Some("Not Modified".into()))));
    assert_eq!(
        i.expose_headers,
        Some(vec!["Content-Type".into(), "ETag".into()])
    );
    assert_eq!(
        i.next_link,
        Some(NextLink {
            uri: "/next?x=1".into(),
            timeout: 30
        })
    );
    assert_eq!(i.gone_link.as_deref(), Some("/gone"));
}

#[test]
fn channel_count_is_capped() {
    let many: Vec<String> = (0..MAX_CHANNELS + 10).map(|n| format!("ch{n}")).collect();
    let i = parse(&[("grip-channel", &many.join(", "))]).unwrap();
    assert_eq!(i.channels.len(), MAX_CHANNELS);
}

#[test]
fn keep_alive_forms() {
    let raw = parse(&[("grip-keep-alive", "  :\\n ")])
        .unwrap()
        .keep_alive
        .unwrap();
    assert_eq!(
        (&raw.data[..], raw.timeout, raw.mode),
        (&b":\\n"[..], DEFAULT_KEEP_ALIVE, KeepAliveMode::Idle)
    );
    let b64 = parse(&[("grip-keep-alive", "OnBpbmcK; format=base64; timeout=0")])
        .unwrap()
        .keep_alive
        .unwrap();
    assert_eq!((&b64.data[..], b64.timeout), (&b":ping\n"[..], 1));
}

#[test]
fn malformed_headers() {
    let cases: &[(&[(&'static str, &str)], InstructError)] = &[
        (
            &[("grip-hold", "forever")],
            InstructError::BadHold("forever".into()),
        ),
        (
            &[(
                "grip-channel",
                "x; filter=1; filter=2; filter=3; filter=4; filter=5; filter=6",
            )],
            InstructError::TooManyFilters("x".into()),
        ),
        (
            &[("grip-timeout", "soon")],
            InstructError::BadTimeout("soon".into()),
        ),
        (
            &[("grip-timeout", "-5")],
            InstructError::BadTimeout("-5".into()),
        ),
        (
            &[("grip-keep-alive", "; timeout=5")],
            InstructError::BadKeepAlive("empty data".into()),
        ),
        (
            &[("grip-keep-alive", "x; format=hex")],
            InstructError::BadKeepAlive("unknown format \"hex\"".into()),
        ),
        (
            &[("grip-keep-alive", "x; mode=sometimes")],
            InstructError::BadKeepAlive("unknown mode \"sometimes\"".into()),
        ),
        (
            &[("grip-keep-alive", "x; timeout=-1")],
            InstructError::BadKeepAlive("bad timeout \"-1\"".into()),
        ),
        (
            &[("grip-keep-alive", "x\\; format=cstring")],
            InstructError::BadKeepAlive("cstring data ends with a backslash".into()),
        ),
        (
            &[("grip-keep-alive", "\\xZZ; format=cstring")],
            InstructError::BadKeepAlive("bad \\x escape in cstring data".into()),
        ),
        (
            &[("grip-keep-alive", "***; format=base64")],
            InstructError::BadKeepAlive("data is not base64".into()),
        ),
        (
            &[("grip-set-meta", "novalue")],
            InstructError::BadMeta("expected key=value, found \"novalue\"".into()),
        ),
        (
            &[("grip-status", "ok")],
            InstructError::BadStatus("ok".into()),
        ),
        (
            &[("grip-status", "1000")],
            InstructError::BadStatus("1000".into()),
        ),
        (
            &[("grip-link", "/next; rel=next")],
            InstructError::BadLink("\"/next\" is not <URI>".into()),
        ),
        (
            &[("grip-link", "</next>; rel=next; timeout=x")],
            InstructError::BadLink("bad timeout \"x\"".into()),
        ),
    ];
    for (pairs, expected) in cases {
        assert_eq!(parse(pairs).as_ref(), Err(expected), "{pairs:?}");
    }
    // Lax where Pushpin is lax: unparseable channel elements and links
    // without rel are skipped.
    let i = parse(&[("grip-channel", "ok, \"open"), ("grip-link", "</x>")]).unwrap();
    assert!(i.channels.is_empty() && i.next_link.is_none());
}

#[test]
fn instruct_body() {
    let mut i = parse(&[("grip-channel", "from-header")]).unwrap();
    let body = br#"{"hold":{"mode":"stream","channels":[{"name":"a","prev-id":"7","filters":["skip-self"]}],
        "timeout":60,"keep-alive":{"content-bin":"OnBpbmcK","timeout":15},"meta":{"user":"bob"}},
        "response":{"code":201,"headers":{"X-A":"1"},"body-bin":"aGk="}}"#;
    i.apply_body(200, body).unwrap();
    assert_eq!(i.hold, Some(HoldMode::Stream));
    assert_eq!(
        i.channels
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["from-header", "a"]
    );
    assert_eq!(i.timeout, 60);
    let ka = i.keep_alive.unwrap();
    assert_eq!(
        (&ka.data[..], ka.timeout, ka.mode),
        (&b":ping\n"[..], 15, KeepAliveMode::Interval)
    );
    assert_eq!(i.meta, vec![("user".into(), "bob".into())]);
    let r = i.response.unwrap();
    assert_eq!((r.code, &r.body[..]), (201, &b"hi"[..]));
    assert_eq!(r.headers, vec![("X-A".into(), "1".into())]);

    let mut i = Instruct::default();
    i.apply_body(200, br#"{"hold":{"channels":[{"name":"x"}]},"response":{"headers":[["A","1"],["A","2"]],"body":"text"}}"#).unwrap();
    assert_eq!(i.hold, Some(HoldMode::Response));
    let r = i.response.unwrap();
    assert_eq!(
        (r.code, r.headers.len(), &r.body[..]),
        (200, 2, &b"text"[..])
    );
}

#[test]
fn malformed_instruct_bodies() {
    let mut i = Instruct::default();
    assert_eq!(
        i.apply_body(404, b"{}"),
        Err(InstructError::InstructStatus(404))
    );
    for body in [
        &b"not json"[..],
        br#"{"hold":{}}"#,
        br#"{"hold":{"channels":"x"}}"#,
        br#"{"hold":{"mode":"sometimes","channels":[]}}"#,
        br#"{"hold":{"channels":[{"name":"x","filters":["1","2","3","4","5","6"]}]}}"#,
        br#"{"hold":{"channels":[],"keep-alive":{"timeout":5}}}"#,
        br#"{"response":{"body-bin":"***"}}"#,
        br#"{"response":{"code":"200"}}"#,
    ] {
        assert!(
            i.apply_body(200, body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn session_headers() {
    let i = parse(&[
        ("grip-hold", "stream"),
        ("grip-session-id", "abc"),
        (
            "grip-session-detect",
            "path-prefix=/api/; sid-ptr=/session, path-prefix=/form/; sid-ptr=/s; json-param=data",
        ),
        ("grip-last", "news; last-id=4, other; last-id=\"x;y\""),
    ])
    .unwrap();
    assert_eq!(i.session_id.as_deref(), Some("abc"));
    assert_eq!(
        i.session_detect,
        vec![
            SessionDetect {
                path_prefix: "/api/".into(),
                sid_ptr: "/session".into(),
                json_param: None
            },
            SessionDetect {
                path_prefix: "/form/".into(),
                sid_ptr: "/s".into(),
                json_param: Some("data".into())
            },
        ]
    );
    assert_eq!(
        i.last_ids,
        vec![
            ("news".to_owned(), "4".to_owned()),
            ("other".to_owned(), "x;y".to_owned())
        ]
    );
}

#[test]
fn malformed_session_headers_are_skipped() {
    let i = parse(&[
        ("grip-session-id", ""),
        ("grip-session-detect", "path-prefix=/only"),
        ("grip-session-detect", "sid-ptr=/only"),
        ("grip-session-detect", "garbage; path-prefix=/; sid-ptr=/s"),
        ("grip-session-detect", "path-prefix=\"/open; sid-ptr=/s"),
        ("grip-last", "nolastid, ; last-id=3, ch; last-id"),
    ])
    .unwrap();
    assert_eq!(i.session_id, None);
    assert!(i.session_detect.is_empty());
    assert!(i.last_ids.is_empty());
}

#[test]
fn header_values_are_utf8_and_other_bytes_are_refused() {
    let mut map = HeaderMap::new();
    map.append("grip-hold", HeaderValue::from_static("stream"));
    map.append(
        "grip-channel",
        HeaderValue::from_bytes("café, naïve; prev-id=1".as_bytes()).unwrap(),
    );
    let i = Instruct::from_headers(&map).unwrap();
    let names: Vec<&str> = i.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["café", "naïve"]);
    assert_eq!(i.channels[1].prev_id.as_deref(), Some("1"));

    // Latin-1 'é' alone is not UTF-8: refused by name, not skipped.
    let mut map = HeaderMap::new();
    map.append("grip-hold", HeaderValue::from_static("stream"));
    map.append("grip-channel", HeaderValue::from_bytes(b"caf\xe9").unwrap());
    let err = Instruct::from_headers(&map).unwrap_err();
    assert!(matches!(err, InstructError::NotUtf8(ref name) if name == "grip-channel"));
    assert_eq!(err.to_string(), "grip-channel is not UTF-8");
}
