//! The frame layer against hand-built bytes: every rejection rule of RFC
//! 9113 §4.2 and §6, the writers byte for byte, and round trips through
//! the writers and the readers at arbitrary read boundaries.

// In a module named after the layer, so that `cargo test frame` runs these
// too.
mod frame {
    use proptest::prelude::*;
    use sluice_h2codec::frame::*;

    use ErrorCode::*;
    use FrameError::{Connection, Stream};

    const MAX: u32 = DEFAULT_MAX_FRAME_SIZE;

    /// A frame built by hand, independently of `write_head`.
    fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = len.to_be_bytes()[1..].to_vec();
        v.push(kind);
        v.push(flags);
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// Parses one whole frame three ways (parse, parse_from, FrameReader one
    /// byte at a time), checks they agree, and returns the verdict as a
    /// comparable value.
    fn check(bytes: &[u8]) -> Result<Owned, FrameError> {
        let head = Head::parse(bytes[..HEADER_LEN].try_into().unwrap());
        let direct = parse(head, &bytes[HEADER_LEN..], MAX).map(|f| own(&f));
        let (r, n) = parse_from(bytes, MAX).expect("whole frame");
        assert_eq!(n, bytes.len());
        assert_eq!(r.map(|f| own(&f)), direct);
        let mut reader = FrameReader::new(MAX);
        for (i, b) in bytes.iter().enumerate() {
            assert!(reader.frame().is_none(), "frame before byte {i}");
            assert_eq!(reader.push(std::slice::from_ref(b)), 1);
        }
        assert_eq!(reader.buffered(), bytes.len());
        assert_eq!(reader.frame().unwrap().map(|f| own(&f)), direct);
        reader.consume();
        assert_eq!(reader.buffered(), 0);
        direct
    }

    fn err(bytes: &[u8]) -> FrameError {
        check(bytes).expect_err("accepted")
    }

    /// A frame with its borrowed parts copied, to compare and collect.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Owned {
        Data {
            stream: u32,
            end_stream: bool,
            data: Vec<u8>,
            flow_len: u32,
        },
        Headers {
            stream: u32,
            end_stream: bool,
            end_headers: bool,
            priority: Option<Priority>,
            fragment: Vec<u8>,
        },
        Priority {
            stream: u32,
            priority: Priority,
        },
        Rst {
            stream: u32,
            code: u32,
        },
        Settings {
            ack: bool,
            params: Vec<(u16, u32)>,
        },
        PushPromise {
            stream: u32,
            end_headers: bool,
            promised: u32,
            fragment: Vec<u8>,
        },
        Ping {
            ack: bool,
            data: [u8; 8],
        },
        GoAway {
            last_stream: u32,
            code: u32,
            debug: Vec<u8>,
        },
        WindowUpdate {
            stream: u32,
            increment: u32,
        },
        Continuation {
            stream: u32,
            end_headers: bool,
            fragment: Vec<u8>,
        },
        Unknown {
            kind: u8,
            stream: u32,
        },
    }

    fn own(f: &Frame<'_>) -> Owned {
        match *f {
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => Owned::Data {
                stream,
                end_stream,
                data: data.to_vec(),
                flow_len,
            },
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                priority,
                fragment,
            } => Owned::Headers {
                stream,
                end_stream,
                end_headers,
                priority,
                fragment: fragment.to_vec(),
            },
            Frame::Priority { stream, priority } => Owned::Priority { stream, priority },
            Frame::RstStream { stream, code } => Owned::Rst { stream, code },
            Frame::Settings { ack, params } => Owned::Settings {
                ack,
                params: params.iter().collect(),
            },
            Frame::PushPromise {
                stream,
                end_headers,
                promised,
                fragment,
            } => Owned::PushPromise {
                stream,
                end_headers,
                promised,
                fragment: fragment.to_vec(),
            },
            Frame::Ping { ack, data } => Owned::Ping { ack, data },
            Frame::GoAway {
                last_stream,
                code,
                debug,
            } => Owned::GoAway {
                last_stream,
                code,
                debug: debug.to_vec(),
            },
            Frame::WindowUpdate { stream, increment } => Owned::WindowUpdate { stream, increment },
            Frame::Continuation {
                stream,
                end_headers,
                fragment,
            } => Owned::Continuation {
                stream,
                end_headers,
                fragment: fragment.to_vec(),
            },
            Frame::Unknown { kind, stream } => Owned::Unknown { kind, stream },
        }
    }

    // ---- what parse accepts ----

    #[test]
    fn parses_every_type() {
        assert_eq!(
            check(&raw(DATA, END_STREAM | PADDED, 1, &[2, b'h', b'i', 0, 0])),
            Ok(Owned::Data {
                stream: 1,
                end_stream: true,
                data: b"hi".to_vec(),
                flow_len: 5
            })
        );
        // The largest padding: all but the pad length byte.
        assert_eq!(
            check(&raw(DATA, PADDED, 1, &[2, 0, 0])),
            Ok(Owned::Data {
                stream: 1,
                end_stream: false,
                data: vec![],
                flow_len: 3
            })
        );
        assert_eq!(
            check(&raw(
                HEADERS,
                PADDED | PRIORITY_FLAG | END_HEADERS,
                3,
                &[1, 0x80, 0, 0, 1, 15, 0x82, 0x84, 0]
            )),
            Ok(Owned::Headers {
                stream: 3,
                end_stream: false,
                end_headers: true,
                priority: Some(Priority {
                    dependency: 1,
                    exclusive: true,
                    weight: 15
                }),
                fragment: vec![0x82, 0x84],
            })
        );
        assert_eq!(
            check(&raw(HEADERS, END_STREAM, 3, &[])),
            Ok(Owned::Headers {
                stream: 3,
                end_stream: true,
                end_headers: false,
                priority: None,
                fragment: vec![],
            })
        );
        assert_eq!(
            check(&raw(PRIORITY, 0, 5, &[0, 0, 0, 3, 255])),
            Ok(Owned::Priority {
                stream: 5,
                priority: Priority {
                    dependency: 3,
                    exclusive: false,
                    weight: 255
                }
            })
        );
        assert_eq!(
            check(&raw(RST_STREAM, 0, 5, &[0, 0, 0x12, 0x34])),
            Ok(Owned::Rst {
                stream: 5,
                code: 0x1234
            })
        );
        assert_eq!(
            check(&raw(
                SETTINGS,
                0,
                0,
                &[0, 4, 0, 1, 0, 0, 0xab, 0xcd, 1, 2, 3, 4]
            )),
            Ok(Owned::Settings {
                ack: false,
                params: vec![(4, 0x10000), (0xabcd, 0x0102_0304)]
            })
        );
        assert_eq!(
            check(&raw(SETTINGS, ACK, 0, &[])),
            Ok(Owned::Settings {
                ack: true,
                params: vec![]
            })
        );
        assert_eq!(
            check(&raw(
                PUSH_PROMISE,
                PADDED | END_HEADERS,
                1,
                &[1, 0x80, 0, 0, 2, 0x82, 0]
            )),
            Ok(Owned::PushPromise {
                stream: 1,
                end_headers: true,
                promised: 2,
                fragment: vec![0x82]
            })
        );
        assert_eq!(
            check(&raw(PING, ACK, 0, &[1, 2, 3, 4, 5, 6, 7, 8])),
            Ok(Owned::Ping {
                ack: true,
                data: [1, 2, 3, 4, 5, 6, 7, 8]
            })
        );
        assert_eq!(
            check(&raw(GOAWAY, 0, 0, &[0x80, 0, 0, 9, 0, 0, 0, 0xff, b'x'])),
            Ok(Owned::GoAway {
                last_stream: 9,
                code: 0xff,
                debug: b"x".to_vec()
            })
        );
        assert_eq!(
            check(&raw(WINDOW_UPDATE, 0, 0, &[0xff, 0xff, 0xff, 0xff])),
            Ok(Owned::WindowUpdate {
                stream: 0,
                increment: MAX_WINDOW
            })
        );
        assert_eq!(
            check(&raw(CONTINUATION, END_HEADERS, 7, &[0x86])),
            Ok(Owned::Continuation {
                stream: 7,
                end_headers: true,
                fragment: vec![0x86]
            })
        );
        // Unknown types are ignored on any stream, at any length.
        assert_eq!(
            check(&raw(0x42, 0xff, 0, &[1, 2, 3])),
            Ok(Owned::Unknown {
                kind: 0x42,
                stream: 0
            })
        );
        assert_eq!(
            check(&raw(0x0a, 0, 9, &[])),
            Ok(Owned::Unknown {
                kind: 0x0a,
                stream: 9
            })
        );
    }

    #[test]
    fn head_parse_clears_the_reserved_bit() {
        let h = Head::parse(&[0x12, 0x34, 0x56, HEADERS, 0x25, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            h,
            Head {
                len: 0x12_3456,
                kind: HEADERS,
                flags: 0x25,
                stream: MAX_WINDOW
            }
        );
        assert!(h.has(END_STREAM) && h.has(END_HEADERS) && h.has(PRIORITY_FLAG));
        assert!(!h.has(PADDED));
        // Reserved bits are ignored everywhere: the stream id, a DATA frame
        // on "stream 0x8000_0001" is on stream 1.
        assert_eq!(
            check(&raw(DATA, 0, 0x8000_0001, b"a")),
            Ok(Owned::Data {
                stream: 1,
                end_stream: false,
                data: b"a".to_vec(),
                flow_len: 1
            })
        );
        assert_eq!(
            check(&raw(WINDOW_UPDATE, 0, 1, &[0x80, 0, 0, 1])),
            Ok(Owned::WindowUpdate {
                stream: 1,
                increment: 1
            })
        );
    }

    #[test]
    fn error_code_values() {
        assert_eq!(ErrorCode::from_u32(0), Some(NoError));
        assert_eq!(ErrorCode::from_u32(0x6), Some(FrameSizeError));
        assert_eq!(ErrorCode::from_u32(0xd), Some(Http11Required));
        assert_eq!(ErrorCode::from_u32(0xe), None);
        for v in 0..=0xd {
            assert_eq!(ErrorCode::from_u32(v).unwrap() as u32, v);
        }
    }

    // ---- what parse rejects ----

    #[test]
    fn frame_longer_than_max_is_rejected_from_the_header() {
        let mut bytes = raw(DATA, 0, 1, &vec![0; MAX as usize + 1]);
        let head = Head::parse(bytes[..HEADER_LEN].try_into().unwrap());
        assert_eq!(check_len(&head, MAX), Err(Connection(FrameSizeError)));
        assert_eq!(check_len(&head, MAX + 1), Ok(()));
        assert_eq!(
            parse(head, &bytes[HEADER_LEN..], MAX),
            Err(Connection(FrameSizeError))
        );
        // parse_from judges it from the header alone.
        let (r, n) = parse_from(&bytes[..HEADER_LEN], MAX).unwrap();
        assert_eq!((r, n), (Err(Connection(FrameSizeError)), HEADER_LEN));
        // So does the reader, which then takes nothing more.
        let mut reader = FrameReader::new(MAX);
        assert_eq!(reader.push(&bytes[..100]), HEADER_LEN);
        assert_eq!(reader.frame(), Some(Err(Connection(FrameSizeError))));
        reader.consume();
        assert_eq!(reader.push(&bytes[HEADER_LEN..]), 0);
        assert_eq!(reader.frame(), Some(Err(Connection(FrameSizeError))));
        assert_eq!(reader.buffered(), HEADER_LEN);
        // Even an unknown type (§4.2 covers every frame).
        bytes[3] = 0xee;
        let (r, _) = parse_from(&bytes, MAX).unwrap();
        assert_eq!(r, Err(Connection(FrameSizeError)));
        // A larger advertised maximum admits it.
        let (r, n) = parse_from(&bytes, MAX + 1).unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(
            r,
            Ok(Frame::Unknown {
                kind: 0xee,
                stream: 1
            })
        );
    }

    #[test]
    fn stream_frames_on_stream_zero() {
        for (kind, payload) in [
            (DATA, &b"x"[..]),
            (HEADERS, &[0x82][..]),
            (PRIORITY, &[0, 0, 0, 1, 0][..]),
            (RST_STREAM, &[0, 0, 0, 0][..]),
            (PUSH_PROMISE, &[0, 0, 0, 2][..]),
            (CONTINUATION, &[0x82][..]),
        ] {
            assert_eq!(
                err(&raw(kind, 0, 0, payload)),
                Connection(ProtocolError),
                "type {kind}"
            );
            // The reserved bit does not make a stream.
            assert_eq!(
                err(&raw(kind, 0, 0x8000_0000, payload)),
                Connection(ProtocolError),
                "type {kind}"
            );
        }
    }

    #[test]
    fn connection_frames_on_a_stream() {
        for (kind, payload) in [
            (SETTINGS, &[][..]),
            (PING, &[0; 8][..]),
            (GOAWAY, &[0; 8][..]),
        ] {
            assert_eq!(
                err(&raw(kind, 0, 1, payload)),
                Connection(ProtocolError),
                "type {kind}"
            );
        }
    }

    #[test]
    fn padding_too_long() {
        // Pad length equal to or above the payload length (§6.1, §6.2, §6.6).
        assert_eq!(
            err(&raw(DATA, PADDED, 1, &[3, 0, 0])),
            Connection(ProtocolError)
        );
        assert_eq!(err(&raw(DATA, PADDED, 1, &[1])), Connection(ProtocolError));
        assert_eq!(
            err(&raw(DATA, PADDED, 1, &[255, 1, 2])),
            Connection(ProtocolError)
        );
        assert_eq!(
            err(&raw(HEADERS, PADDED, 1, &[2, 0x82])),
            Connection(ProtocolError)
        );
        // Padding that would eat the priority fields or the promised stream id.
        assert_eq!(
            err(&raw(
                HEADERS,
                PADDED | PRIORITY_FLAG,
                1,
                &[2, 0, 0, 0, 0, 0, 0]
            )),
            Connection(ProtocolError)
        );
        assert!(check(&raw(
            HEADERS,
            PADDED | PRIORITY_FLAG,
            1,
            &[1, 0, 0, 0, 0, 0, 0]
        ))
        .is_ok());
        assert_eq!(
            err(&raw(PUSH_PROMISE, PADDED, 1, &[1, 0, 0, 0, 2])),
            Connection(ProtocolError)
        );
    }

    #[test]
    fn too_short_for_mandatory_fields() {
        // No room for the pad length byte, the priority fields or the
        // promised stream id: FRAME_SIZE_ERROR (§4.2), on the connection since
        // these frames carry a field block or count against its window.
        assert_eq!(err(&raw(DATA, PADDED, 1, &[])), Connection(FrameSizeError));
        assert_eq!(
            err(&raw(HEADERS, PADDED, 1, &[])),
            Connection(FrameSizeError)
        );
        assert_eq!(
            err(&raw(HEADERS, PRIORITY_FLAG, 1, &[0, 0, 0, 3])),
            Connection(FrameSizeError)
        );
        assert_eq!(
            err(&raw(HEADERS, PRIORITY_FLAG | PADDED, 1, &[0, 0, 0, 0, 3])),
            Connection(FrameSizeError)
        );
        assert_eq!(
            err(&raw(PUSH_PROMISE, 0, 1, &[0, 0, 2])),
            Connection(FrameSizeError)
        );
        assert_eq!(
            err(&raw(PUSH_PROMISE, PADDED, 1, &[0, 0, 0, 2])),
            Connection(FrameSizeError)
        );
    }

    #[test]
    fn fixed_length_frames() {
        for len in [0, 4, 6] {
            assert_eq!(
                err(&raw(PRIORITY, 0, 3, &vec![0; len])),
                Stream(3, FrameSizeError),
                "PRIORITY {len}"
            );
        }
        for len in [0, 3, 5] {
            assert_eq!(
                err(&raw(RST_STREAM, 0, 3, &vec![0; len])),
                Connection(FrameSizeError),
                "RST_STREAM {len}"
            );
            assert_eq!(
                err(&raw(WINDOW_UPDATE, 0, 3, &vec![0, 0, 0, 1, 0][..len])),
                Connection(FrameSizeError),
                "WINDOW_UPDATE {len}"
            );
            assert_eq!(
                err(&raw(WINDOW_UPDATE, 0, 0, &vec![0, 0, 0, 1, 0][..len])),
                Connection(FrameSizeError),
                "WINDOW_UPDATE {len}"
            );
        }
        for len in [0, 7, 9] {
            assert_eq!(
                err(&raw(PING, 0, 0, &vec![0; len])),
                Connection(FrameSizeError),
                "PING {len}"
            );
        }
        for len in [0, 4, 7] {
            assert_eq!(
                err(&raw(GOAWAY, 0, 0, &vec![0; len])),
                Connection(FrameSizeError),
                "GOAWAY {len}"
            );
        }
    }

    #[test]
    fn settings_lengths() {
        for len in [1, 5, 7, 13] {
            assert_eq!(
                err(&raw(SETTINGS, 0, 0, &vec![0; len])),
                Connection(FrameSizeError),
                "SETTINGS {len}"
            );
        }
        assert_eq!(
            err(&raw(SETTINGS, ACK, 0, &[0; 6])),
            Connection(FrameSizeError)
        );
        assert_eq!(
            err(&raw(SETTINGS, ACK, 0, &[0; 1])),
            Connection(FrameSizeError)
        );
    }

    #[test]
    fn window_update_of_zero() {
        assert_eq!(
            err(&raw(WINDOW_UPDATE, 0, 5, &[0; 4])),
            Stream(5, ProtocolError)
        );
        assert_eq!(
            err(&raw(WINDOW_UPDATE, 0, 0, &[0; 4])),
            Connection(ProtocolError)
        );
        // Only the reserved bit set is an increment of 0.
        assert_eq!(
            err(&raw(WINDOW_UPDATE, 0, 5, &[0x80, 0, 0, 0])),
            Stream(5, ProtocolError)
        );
    }

    #[test]
    fn stream_depending_on_itself() {
        assert_eq!(
            err(&raw(PRIORITY, 0, 3, &[0, 0, 0, 3, 0])),
            Stream(3, ProtocolError)
        );
        assert_eq!(
            err(&raw(PRIORITY, 0, 3, &[0x80, 0, 0, 3, 0])),
            Stream(3, ProtocolError)
        );
        // A HEADERS frame carries a field block that must be decoded to keep
        // HPACK in sync: the error ends the connection instead.
        assert_eq!(
            err(&raw(
                HEADERS,
                PRIORITY_FLAG | END_HEADERS,
                3,
                &[0, 0, 0, 3, 0, 0x82]
            )),
            Connection(ProtocolError)
        );
        assert_eq!(
            err(&raw(
                HEADERS,
                PRIORITY_FLAG | PADDED,
                3,
                &[0, 0x80, 0, 0, 3, 0]
            )),
            Connection(ProtocolError)
        );
    }

    // ---- the reader ----

    #[test]
    fn reader_takes_one_frame_at_a_time() {
        let mut bytes = raw(PING, 0, 0, &[7; 8]);
        bytes.extend(raw(DATA, END_STREAM, 1, b"abc"));
        bytes.extend(raw(SETTINGS, ACK, 0, &[]));
        let mut reader = FrameReader::new(MAX);
        assert_eq!(reader.push(&bytes[..4]), 4);
        assert!(reader.frame().is_none());
        assert_eq!(reader.push(&bytes[4..]), 13);
        assert_eq!(reader.buffered(), 17);
        assert_eq!(
            reader.push(&bytes[17..]),
            0,
            "takes nothing until consume()"
        );
        assert_eq!(
            reader.frame(),
            Some(Ok(Frame::Ping {
                ack: false,
                data: [7; 8]
            }))
        );
        reader.consume();
        assert_eq!(reader.buffered(), 0);
        assert_eq!(reader.push(&bytes[17..]), 12);
        assert_eq!(
            reader.frame(),
            Some(Ok(Frame::Data {
                stream: 1,
                end_stream: true,
                data: b"abc",
                flow_len: 3
            }))
        );
        reader.consume();
        // A payload-less frame completes with its header.
        assert_eq!(reader.push(&bytes[29..]), 9);
        assert!(matches!(
            reader.frame(),
            Some(Ok(Frame::Settings { ack: true, params })) if params.is_empty()
        ));
        reader.consume();
        reader.consume();
        assert_eq!(reader.buffered(), 0);
        assert_eq!(reader.push(&[]), 0);
        assert!(reader.frame().is_none());
    }

    #[test]
    fn parse_from_needs_a_whole_frame() {
        let bytes = raw(DATA, 0, 1, b"hello");
        for n in 0..bytes.len() {
            assert!(parse_from(&bytes[..n], MAX).is_none(), "{n} bytes");
        }
        let mut more = bytes.clone();
        more.extend(raw(PING, 0, 0, &[0; 8]));
        let (r, n) = parse_from(&more, MAX).unwrap();
        assert_eq!(n, bytes.len());
        assert!(matches!(r, Ok(Frame::Data { data: b"hello", .. })));
    }

    #[test]
    fn reader_after_a_stream_error_goes_on() {
        let mut bytes = raw(WINDOW_UPDATE, 0, 3, &[0; 4]);
        bytes.extend(raw(PING, 0, 0, &[1; 8]));
        let mut reader = FrameReader::new(MAX);
        let n = reader.push(&bytes);
        assert_eq!(reader.frame(), Some(Err(Stream(3, ProtocolError))));
        reader.consume();
        reader.push(&bytes[n..]);
        assert!(matches!(reader.frame(), Some(Ok(Frame::Ping { .. }))));
    }

    // ---- writers, byte for byte ----

    #[test]
    fn write_control_frames() {
        let mut out = Vec::new();
        write_settings_ack(&mut out);
        assert_eq!(out, [0, 0, 0, 4, 1, 0, 0, 0, 0]);

        out.clear();
        write_settings(
            &mut out,
            &[
                (setting::MAX_CONCURRENT_STREAMS, 100),
                (setting::INITIAL_WINDOW_SIZE, 65_535),
            ],
        );
        assert_eq!(
            out,
            [
                0x00, 0x00, 0x0c, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, //
                0x00, 0x03, 0x00, 0x00, 0x00, 0x64, //
                0x00, 0x04, 0x00, 0x00, 0xff, 0xff,
            ]
        );

        out.clear();
        write_settings(&mut out, &[]);
        assert_eq!(out, [0, 0, 0, 4, 0, 0, 0, 0, 0]);

        out.clear();
        write_ping(&mut out, false, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(out, [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        out.clear();
        write_ping(&mut out, true, [0xff; 8]);
        assert_eq!(
            out,
            [0, 0, 8, 6, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );

        out.clear();
        write_goaway(&mut out, 7, ProtocolError, b"hi");
        assert_eq!(
            out,
            [0, 0, 10, 7, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, b'h', b'i']
        );

        out.clear();
        write_window_update(&mut out, 1, 0x1_0000);
        assert_eq!(out, [0, 0, 4, 8, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
        out.clear();
        write_window_update(&mut out, 0, MAX_WINDOW);
        assert_eq!(out, [0, 0, 4, 8, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);

        out.clear();
        write_rst_stream(&mut out, 3, Cancel);
        assert_eq!(out, [0, 0, 4, 3, 0, 0, 0, 0, 3, 0, 0, 0, 8]);

        // Appends; never sets the reserved bit.
        write_head(&mut out, 0x01_0203, 0xaa, 0xbb, 0xffff_ffff);
        assert_eq!(out[13..], [1, 2, 3, 0xaa, 0xbb, 0x7f, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn goaway_debug_data_fits_any_peer() {
        let mut out = Vec::new();
        write_goaway(&mut out, 1, EnhanceYourCalm, &[b'x'; 20_000]);
        assert_eq!(out.len(), HEADER_LEN + MAX as usize);
        let (r, _) = parse_from(&out, MAX).unwrap();
        match r.unwrap() {
            Frame::GoAway {
                last_stream,
                code,
                debug,
            } => {
                assert_eq!((last_stream, code), (1, EnhanceYourCalm as u32));
                assert_eq!(debug.len(), MAX as usize - 8);
            }
            f => panic!("{f:?}"),
        }
    }

    #[test]
    fn write_data_frames() {
        let mut out = Vec::new();
        write_data(&mut out, 1, b"hello", true, 2);
        assert_eq!(
            out,
            [
                0, 0, 2, 0, 0, 0, 0, 0, 1, b'h', b'e', //
                0, 0, 2, 0, 0, 0, 0, 0, 1, b'l', b'l', //
                0, 0, 1, 0, 1, 0, 0, 0, 1, b'o',
            ]
        );
        out.clear();
        write_data(&mut out, 3, b"hello", false, MAX);
        assert_eq!(
            out,
            [0, 0, 5, 0, 0, 0, 0, 0, 3, b'h', b'e', b'l', b'l', b'o']
        );
        out.clear();
        write_data(&mut out, 3, b"", true, MAX);
        assert_eq!(out, [0, 0, 0, 0, 1, 0, 0, 0, 3]);
        out.clear();
        write_data(&mut out, 3, b"", false, MAX);
        assert!(out.is_empty());
        // A split exactly at the maximum leaves no empty frame behind.
        write_data(&mut out, 3, b"abcd", true, 2);
        assert_eq!(out.len(), 2 * (HEADER_LEN + 2));
        assert_eq!(out[HEADER_LEN + 2 + 4], END_STREAM);
    }

    #[test]
    fn write_small_headers() {
        let mut out = Vec::new();
        write_headers(&mut out, 1, &[0x82, 0x86], true, MAX);
        assert_eq!(out, [0, 0, 2, 1, 5, 0, 0, 0, 1, 0x82, 0x86]);
        out.clear();
        write_headers(&mut out, 1, &[0x82], false, MAX);
        assert_eq!(out, [0, 0, 1, 1, 4, 0, 0, 0, 1, 0x82]);
        out.clear();
        write_headers(&mut out, 5, &[], false, MAX);
        assert_eq!(out, [0, 0, 0, 1, 4, 0, 0, 0, 5]);

        let mut out = b"before".to_vec();
        let at = begin_headers(&mut out, 1);
        assert_eq!(at, 6);
        out.extend_from_slice(&[0x82, 0x86]);
        finish_headers(&mut out, at, true, MAX);
        assert_eq!(out[6..], [0, 0, 2, 1, 5, 0, 0, 0, 1, 0x82, 0x86]);
        assert_eq!(&out[..6], b"before");
    }

    /// A 40 000-byte block at 16 384: HEADERS(16384) + CONTINUATION(16384) +
    /// CONTINUATION(7232), END_HEADERS only on the last, END_STREAM only on
    /// the HEADERS frame; the same through both writers.
    #[test]
    fn header_block_split_into_continuations() {
        let block: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let mut a = Vec::new();
        write_headers(&mut a, 5, &block, true, MAX);
        let mut b = vec![0xee; 3];
        let at = begin_headers(&mut b, 5);
        b.extend_from_slice(&block);
        finish_headers(&mut b, at, true, MAX);
        assert_eq!(b[..3], [0xee; 3]);
        assert_eq!(a, b[3..]);

        let mut input = &a[..];
        let mut frames = Vec::new();
        while !input.is_empty() {
            let (r, n) = parse_from(input, MAX).unwrap();
            frames.push((
                Head::parse(input[..HEADER_LEN].try_into().unwrap()),
                own(&r.unwrap()),
            ));
            input = &input[n..];
        }
        let heads: Vec<(u32, u8, u8, u32)> = frames
            .iter()
            .map(|(h, _)| (h.len, h.kind, h.flags, h.stream))
            .collect();
        assert_eq!(
            heads,
            [
                (16_384, HEADERS, END_STREAM, 5),
                (16_384, CONTINUATION, 0, 5),
                (7_232, CONTINUATION, END_HEADERS, 5),
            ]
        );
        let mut joined = Vec::new();
        for (_, f) in &frames {
            match f {
                Owned::Headers { fragment, .. } | Owned::Continuation { fragment, .. } => {
                    joined.extend_from_slice(fragment)
                }
                f => panic!("{f:?}"),
            }
        }
        assert_eq!(joined, block);
    }

    // ---- Settings ----

    fn params(pairs: &[(u16, u32)]) -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|&(id, v)| {
                let mut e = id.to_be_bytes().to_vec();
                e.extend(v.to_be_bytes());
                e
            })
            .collect()
    }

    fn apply(s: &mut Settings, pairs: &[(u16, u32)]) -> Result<(), FrameError> {
        let bytes = params(pairs);
        s.apply(SettingsParams::new(&bytes).unwrap())
    }

    #[test]
    fn settings_defaults_and_updates() {
        let d = Settings::default();
        assert_eq!(
            d,
            Settings {
                header_table_size: 4096,
                enable_push: true,
                max_concurrent_streams: None,
                initial_window_size: 65_535,
                max_frame_size: 16_384,
                max_header_list_size: None,
            }
        );
        let mut s = d;
        apply(
            &mut s,
            &[
                (setting::HEADER_TABLE_SIZE, 0),
                (setting::ENABLE_PUSH, 0),
                (setting::MAX_CONCURRENT_STREAMS, 100),
                (setting::INITIAL_WINDOW_SIZE, MAX_WINDOW),
                (setting::MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE),
                (setting::MAX_HEADER_LIST_SIZE, 8192),
                (setting::ENABLE_CONNECT_PROTOCOL, 1),
                (0x99, 12345),
            ],
        )
        .unwrap();
        assert_eq!(
            s,
            Settings {
                header_table_size: 0,
                enable_push: false,
                max_concurrent_streams: Some(100),
                initial_window_size: MAX_WINDOW,
                max_frame_size: MAX_MAX_FRAME_SIZE,
                max_header_list_size: Some(8192),
            }
        );
        // An empty SETTINGS frame changes nothing.
        apply(&mut s, &[]).unwrap();
        assert_eq!(s.max_concurrent_streams, Some(100));
    }

    #[test]
    fn settings_last_value_wins() {
        let mut s = Settings::default();
        apply(
            &mut s,
            &[
                (setting::INITIAL_WINDOW_SIZE, 1),
                (setting::MAX_FRAME_SIZE, 20_000),
                (setting::INITIAL_WINDOW_SIZE, 0),
                (setting::ENABLE_PUSH, 0),
                (setting::ENABLE_PUSH, 1),
                (setting::MAX_FRAME_SIZE, 16_384),
            ],
        )
        .unwrap();
        assert_eq!(s.initial_window_size, 0);
        assert!(s.enable_push);
        assert_eq!(s.max_frame_size, 16_384);
    }

    #[test]
    fn settings_errors_change_nothing() {
        for (pair, e) in [
            ((setting::ENABLE_PUSH, 2), ProtocolError),
            ((setting::ENABLE_PUSH, u32::MAX), ProtocolError),
            (
                (setting::INITIAL_WINDOW_SIZE, MAX_WINDOW + 1),
                FlowControlError,
            ),
            ((setting::INITIAL_WINDOW_SIZE, u32::MAX), FlowControlError),
            ((setting::MAX_FRAME_SIZE, 16_383), ProtocolError),
            ((setting::MAX_FRAME_SIZE, 0), ProtocolError),
            (
                (setting::MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE + 1),
                ProtocolError,
            ),
        ] {
            let mut s = Settings::default();
            let r = apply(&mut s, &[(setting::MAX_CONCURRENT_STREAMS, 5), pair]);
            assert_eq!(r, Err(Connection(e)), "{pair:?}");
            assert_eq!(s, Settings::default(), "{pair:?}");
        }
    }

    #[test]
    fn settings_params_view() {
        assert!(SettingsParams::new(&[0; 5]).is_none());
        let bytes = params(&[(1, 2), (3, 4)]);
        let p = SettingsParams::new(&bytes).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.iter().len(), 2);
        assert_eq!(p.into_iter().collect::<Vec<_>>(), [(1, 2), (3, 4)]);
        assert_eq!(format!("{p:?}"), "[(1, 2), (3, 4)]");
        // From a frame, applied.
        let mut out = Vec::new();
        write_settings(&mut out, &[(setting::INITIAL_WINDOW_SIZE, 1 << 20)]);
        let Some((Ok(Frame::Settings { ack: false, params }), _)) = parse_from(&out, MAX) else {
            panic!()
        };
        let mut s = Settings::default();
        s.apply(params).unwrap();
        assert_eq!(s.initial_window_size, 1 << 20);
    }

    // ---- round trips ----

    #[derive(Clone, Debug)]
    enum Spec {
        Data(u32, Vec<u8>, bool),
        /// The last field: written with begin/finish_headers.
        Headers(u32, Vec<u8>, bool, bool),
        Settings(Vec<(u16, u32)>),
        SettingsAck,
        Ping(bool, [u8; 8]),
        WindowUpdate(u32, u32),
        Rst(u32, ErrorCode),
        GoAway(u32, ErrorCode, Vec<u8>),
    }

    fn code() -> impl Strategy<Value = ErrorCode> {
        (0u32..=13).prop_map(|v| ErrorCode::from_u32(v).unwrap())
    }

    fn spec() -> impl Strategy<Value = Spec> {
        let stream = 1..=MAX_WINDOW;
        let bytes = proptest::collection::vec(any::<u8>(), 0..80);
        prop_oneof![
            (stream.clone(), bytes.clone(), any::<bool>())
                .prop_map(|(s, d, e)| Spec::Data(s, d, e)),
            (stream.clone(), bytes.clone(), any::<bool>(), any::<bool>())
                .prop_map(|(s, b, e, p)| Spec::Headers(s, b, e, p)),
            proptest::collection::vec((any::<u16>(), any::<u32>()), 0..5).prop_map(Spec::Settings),
            Just(Spec::SettingsAck),
            (any::<bool>(), any::<[u8; 8]>()).prop_map(|(a, d)| Spec::Ping(a, d)),
            (0..=MAX_WINDOW, 1..=MAX_WINDOW).prop_map(|(s, i)| Spec::WindowUpdate(s, i)),
            (stream, code()).prop_map(|(s, c)| Spec::Rst(s, c)),
            (0..=MAX_WINDOW, code(), bytes).prop_map(|(s, c, d)| Spec::GoAway(s, c, d)),
        ]
    }

    /// Writes `spec` with frames of at most `max` bytes; returns the frames a
    /// reader must see.
    fn write(out: &mut Vec<u8>, spec: &Spec, max: u32) -> Vec<Owned> {
        let m = max as usize;
        match spec {
            Spec::Data(stream, data, end_stream) => {
                write_data(out, *stream, data, *end_stream, max);
                let n = data.len().div_ceil(m);
                if n == 0 {
                    return if *end_stream {
                        vec![Owned::Data {
                            stream: *stream,
                            end_stream: true,
                            data: vec![],
                            flow_len: 0,
                        }]
                    } else {
                        vec![]
                    };
                }
                data.chunks(m)
                    .enumerate()
                    .map(|(i, c)| Owned::Data {
                        stream: *stream,
                        end_stream: *end_stream && i == n - 1,
                        data: c.to_vec(),
                        flow_len: c.len() as u32,
                    })
                    .collect()
            }
            Spec::Headers(stream, block, end_stream, in_place) => {
                if *in_place {
                    let at = begin_headers(out, *stream);
                    out.extend_from_slice(block);
                    finish_headers(out, at, *end_stream, max);
                } else {
                    write_headers(out, *stream, block, *end_stream, max);
                }
                let mut chunks: Vec<&[u8]> = block.chunks(m).collect();
                if chunks.is_empty() {
                    chunks.push(&[]);
                }
                let n = chunks.len();
                chunks
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if i == 0 {
                            Owned::Headers {
                                stream: *stream,
                                end_stream: *end_stream,
                                end_headers: n == 1,
                                priority: None,
                                fragment: c.to_vec(),
                            }
                        } else {
                            Owned::Continuation {
                                stream: *stream,
                                end_headers: i == n - 1,
                                fragment: c.to_vec(),
                            }
                        }
                    })
                    .collect()
            }
            Spec::Settings(params) => {
                write_settings(out, params);
                vec![Owned::Settings {
                    ack: false,
                    params: params.clone(),
                }]
            }
            Spec::SettingsAck => {
                write_settings_ack(out);
                vec![Owned::Settings {
                    ack: true,
                    params: vec![],
                }]
            }
            Spec::Ping(ack, data) => {
                write_ping(out, *ack, *data);
                vec![Owned::Ping {
                    ack: *ack,
                    data: *data,
                }]
            }
            Spec::WindowUpdate(stream, increment) => {
                write_window_update(out, *stream, *increment);
                vec![Owned::WindowUpdate {
                    stream: *stream,
                    increment: *increment,
                }]
            }
            Spec::Rst(stream, code) => {
                write_rst_stream(out, *stream, *code);
                vec![Owned::Rst {
                    stream: *stream,
                    code: *code as u32,
                }]
            }
            Spec::GoAway(last_stream, code, debug) => {
                write_goaway(out, *last_stream, *code, debug);
                vec![Owned::GoAway {
                    last_stream: *last_stream,
                    code: *code as u32,
                    debug: debug.clone(),
                }]
            }
        }
    }

    /// Feeds `bytes` in reads of the sizes given (cycled), taking whole
    /// frames in place with parse_from when `in_place`, else all through the
    /// reader.
    fn read_all(bytes: &[u8], sizes: &[usize], in_place: bool) -> Vec<Owned> {
        let mut got = Vec::new();
        let mut reader = FrameReader::new(MAX);
        let mut pos = 0;
        for &size in sizes.iter().cycle() {
            if pos == bytes.len() {
                break;
            }
            let mut input = &bytes[pos..bytes.len().min(pos + size)];
            pos += input.len();
            while !input.is_empty() {
                if in_place && reader.buffered() == 0 {
                    if let Some((r, n)) = parse_from(input, MAX) {
                        got.push(own(&r.unwrap()));
                        input = &input[n..];
                        continue;
                    }
                }
                let n = reader.push(input);
                input = &input[n..];
                if let Some(r) = reader.frame() {
                    got.push(own(&r.unwrap()));
                    reader.consume();
                } else {
                    assert!(input.is_empty(), "the reader stalled");
                }
            }
        }
        assert_eq!(reader.buffered(), 0);
        got
    }

    proptest! {
        #[test]
        fn frames_round_trip(
            specs in proptest::collection::vec(spec(), 0..12),
            max in prop_oneof![1u32..40, Just(MAX)],
            sizes in proptest::collection::vec(1usize..70, 1..20),
        ) {
            let mut bytes = Vec::new();
            let mut want = Vec::new();
            for s in &specs {
                want.extend(write(&mut bytes, s, max));
            }
            prop_assert_eq!(&read_all(&bytes, &sizes, true), &want);
            prop_assert_eq!(&read_all(&bytes, &sizes, false), &want);
            prop_assert_eq!(&read_all(&bytes, &[bytes.len().max(1)], true), &want);
        }

        /// Any byte string: the readers never panic and agree with each other.
        #[test]
        fn garbage_is_judged_alike(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            sizes in proptest::collection::vec(1usize..30, 1..10),
        ) {
            let mut reader = FrameReader::new(64);
            let mut from_reader = Vec::new();
            let mut pos = 0;
            'outer: for &size in sizes.iter().cycle() {
                if pos == bytes.len() {
                    break;
                }
                let mut input = &bytes[pos..bytes.len().min(pos + size)];
                pos += input.len();
                while !input.is_empty() {
                    let n = reader.push(input);
                    input = &input[n..];
                    match reader.frame() {
                        Some(r) => {
                            let r = r.map(|f| own(&f));
                            let stop = matches!(r, Err(Connection(_)));
                            from_reader.push(r);
                            if stop {
                                break 'outer;
                            }
                            reader.consume();
                        }
                        None => prop_assert!(input.is_empty()),
                    }
                }
            }
            let mut in_place = Vec::new();
            let mut input = &bytes[..];
            while let Some((r, n)) = parse_from(input, 64) {
                let r = r.map(|f| own(&f));
                let stop = matches!(r, Err(Connection(_)));
                in_place.push(r);
                if stop {
                    break;
                }
                input = &input[n..];
            }
            prop_assert_eq!(from_reader, in_place);
        }
    }
}
