// Just enough DER to tell key types apart and to write SEC1 EC private keys. Bounds-checked: any
// malformed input yields nil, never a trap.

/// One DER element: tag byte and content bytes.
struct DERElement {
    let tag: UInt8
    let content: ArraySlice<UInt8>

    var isSequence: Bool { tag == 0x30 }
}

/// Reads consecutive DER elements from a byte range.
struct DERReader {
    private let bytes: ArraySlice<UInt8>
    private var position: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.position = bytes.startIndex
    }

    var isAtEnd: Bool { position >= bytes.endIndex }

    mutating func next() -> DERElement? {
        guard position < bytes.endIndex else { return nil }
        let tag = bytes[position]
        guard tag & 0x1F != 0x1F else { return nil } // multi-byte tags: not used by keys
        var p = position + 1
        guard p < bytes.endIndex else { return nil }
        let first = bytes[p]
        p += 1
        var length = 0
        if first < 0x80 {
            length = Int(first)
        } else {
            let count = Int(first & 0x7F)
            guard count >= 1, count <= 4, p + count <= bytes.endIndex else { return nil }
            for _ in 0..<count {
                length = length << 8 | Int(bytes[p])
                p += 1
            }
        }
        guard length <= bytes.endIndex - p else { return nil }
        position = p + length
        return DERElement(tag: tag, content: bytes[p..<(p + length)])
    }

    /// The children of a constructed element.
    static func children(of element: DERElement) -> [DERElement]? {
        var reader = DERReader(element.content)
        var out: [DERElement] = []
        while !reader.isAtEnd {
            guard let e = reader.next() else { return nil }
            out.append(e)
        }
        return out
    }

    /// Parses `bytes` as exactly one element.
    static func single(_ bytes: ArraySlice<UInt8>) -> DERElement? {
        var reader = DERReader(bytes)
        guard let e = reader.next(), reader.isAtEnd else { return nil }
        return e
    }
}

enum DEROID {
    static let rsaEncryption: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01]
    static let rsaPSS: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A]
    static let ecPublicKey: [UInt8] = [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]
    static let p192: [UInt8] = [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x01]
    static let p256: [UInt8] = [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]
    static let p384: [UInt8] = [0x2B, 0x81, 0x04, 0x00, 0x22]
    static let ed25519: [UInt8] = [0x2B, 0x65, 0x70]

    static func name(_ oid: ArraySlice<UInt8>) -> String {
        switch Array(oid) {
        case rsaEncryption, rsaPSS: return "RSA"
        case ecPublicKey: return "EC"
        case p192: return "EC P-192"
        case p256: return "EC P-256"
        case p384: return "EC P-384"
        case ed25519: return "Ed25519"
        default: return "OID " + Array(oid).hexString
        }
    }
}

/// Minimal DER writer (definite lengths).
enum DERWriter {
    static func element(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [tag]
        let n = content.count
        if n < 0x80 {
            out.append(UInt8(n))
        } else {
            var lenBytes: [UInt8] = []
            var v = n
            while v > 0 { lenBytes.insert(UInt8(v & 0xFF), at: 0); v >>= 8 }
            out.append(0x80 | UInt8(lenBytes.count))
            out += lenBytes
        }
        return out + content
    }

    static func sequence(_ parts: [[UInt8]]) -> [UInt8] { element(0x30, parts.flatMap { $0 }) }
}

import ESPCore
