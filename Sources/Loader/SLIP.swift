/// SLIP framing as the ESP serial loaders use it: `C0 <body> C0`, with `DB DC` for `C0` and
/// `DB DD` for `DB` inside the body.
public enum SLIP {
    public static let end: UInt8 = 0xC0
    public static let esc: UInt8 = 0xDB
    public static let escEnd: UInt8 = 0xDC
    public static let escEsc: UInt8 = 0xDD

    /// One complete frame: delimiters around the escaped body.
    public static func encode<C: Collection>(_ body: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(body.count + body.count / 16 + 2)
        out.append(end)
        for b in body {
            switch b {
            case end: out.append(esc); out.append(escEnd)
            case esc: out.append(esc); out.append(escEsc)
            default: out.append(b)
            }
        }
        out.append(end)
        return out
    }
}

/// An incrementally fed SLIP decoder (a pure state machine: bytes in, events out).
///
/// Feed it whatever the transport delivered — one byte or a large chunk; the events are the same
/// for any split of the same stream. Two policies for bytes outside a frame: the lenient device
/// side drops them (reported as `.junk`), a strict host side treats them as an error the same way.
public struct SLIPDecoder: Sendable {
    public enum Event: Sendable, Equatable {
        /// A complete frame body (unescaped). May be empty for back-to-back delimiters.
        case frame([UInt8])
        /// Bytes seen between frames (after a frame ended and before the next `C0`).
        case junk([UInt8])
        /// `DB` followed by something other than `DC`/`DD`; the frame was abandoned.
        case invalidEscape(UInt8)
        /// A frame grew beyond `maxFrameLength`; it was abandoned.
        case oversized
    }

    enum State: Sendable { case idle, inFrame, escaped, discarding }

    public let maxFrameLength: Int
    private var state: State = .idle
    private var buffer: [UInt8] = []
    private var junk: [UInt8] = []

    /// `maxFrameLength` bounds the unescaped body (65535 data + 8 header by default, plus slack).
    public init(maxFrameLength: Int = 65_535 + 16) {
        self.maxFrameLength = maxFrameLength
    }

    /// True while a frame has been started but not finished.
    public var isInsideFrame: Bool { state == .inFrame || state == .escaped }

    /// The body received so far of a frame that was started but not finished (nil outside a
    /// frame): a reply whose closing delimiter was lost on the wire is complete here.
    public var unfinishedFrame: [UInt8]? { state == .inFrame && !buffer.isEmpty ? buffer : nil }

    /// Feeds one byte; returns an event if this byte completed one.
    public mutating func feed(byte b: UInt8) -> Event? {
        switch state {
        case .idle:
            if b == SLIP.end {
                state = .inFrame
                buffer.removeAll(keepingCapacity: true)
                if !junk.isEmpty {
                    let j = junk
                    junk.removeAll()
                    return .junk(j)
                }
            } else {
                junk.append(b)
                if junk.count >= 4096 { let j = junk; junk.removeAll(); return .junk(j) }
            }
            return nil
        case .discarding:
            // After an error, skip to the next delimiter, which starts a fresh frame.
            if b == SLIP.end { state = .inFrame; buffer.removeAll(keepingCapacity: true) }
            return nil
        case .inFrame:
            if b == SLIP.end {
                let frame = buffer
                buffer.removeAll(keepingCapacity: true)
                if frame.isEmpty {
                    // `C0 C0`: the second delimiter may start the next frame; report the empty frame.
                    state = .inFrame
                    return .frame([])
                }
                state = .idle
                return .frame(frame)
            }
            if b == SLIP.esc { state = .escaped; return nil }
            return append(b)
        case .escaped:
            state = .inFrame
            switch b {
            case SLIP.escEnd: return append(SLIP.end)
            case SLIP.escEsc: return append(SLIP.esc)
            default:
                state = b == SLIP.end ? .inFrame : .discarding
                buffer.removeAll(keepingCapacity: true)
                return .invalidEscape(b)
            }
        }
    }

    private mutating func append(_ b: UInt8) -> Event? {
        guard buffer.count < maxFrameLength else {
            state = .discarding
            buffer.removeAll(keepingCapacity: true)
            return .oversized
        }
        buffer.append(b)
        return nil
    }

    /// Feeds a chunk; returns the events it completed, in order.
    public mutating func feed<C: Collection>(_ bytes: C) -> [Event] where C.Element == UInt8 {
        var events: [Event] = []
        for b in bytes { if let e = feed(byte: b) { events.append(e) } }
        return events
    }

    /// Only the frames of `feed(_:)`.
    public mutating func frames<C: Collection>(_ bytes: C) -> [[UInt8]] where C.Element == UInt8 {
        feed(bytes).compactMap { if case let .frame(f) = $0 { return f } else { return nil } }
    }
}
