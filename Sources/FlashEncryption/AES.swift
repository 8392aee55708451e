import CAES

/// Which AES implementation runs. `automatic` uses AES-NI when the CPU has it.
public enum AESBackend: Sendable, Hashable, CaseIterable {
    case automatic
    /// 32-bit table implementation, any CPU.
    case portable
    /// x86 AES-NI; falls back to `portable` when the CPU lacks it (see ``AES/hardwareAvailable``).
    case aesNI

    var code: Int32 {
        switch self {
        case .automatic: return Int32(CAES_BACKEND_AUTO)
        case .portable: return Int32(CAES_BACKEND_PORTABLE)
        case .aesNI: return Int32(CAES_BACKEND_AESNI)
        }
    }

    /// The implementation that actually runs for this choice on this CPU.
    public var resolved: AESBackend {
        caes_resolve_backend(code) == Int32(CAES_BACKEND_AESNI) ? .aesNI : .portable
    }
}

/// A raw AES-128/AES-256 block cipher (ECB, one block at a time). Flash encryption needs the bare
/// block primitive in both directions with many keys, which general-purpose crypto libraries do
/// not expose; this is that primitive. Not for general use: ECB leaks structure.
public struct AES: Sendable {
    var schedule = caes_schedule()
    public let backend: AESBackend

    /// Whether this CPU has AES-NI.
    public static var hardwareAvailable: Bool { caes_aesni_available() != 0 }

    /// `key` must be 16 or 32 bytes; returns nil otherwise.
    public init?(key: [UInt8], backend: AESBackend = .automatic) {
        self.backend = backend
        var s = caes_schedule()
        let status = key.withUnsafeBufferPointer { k in
            caes_expand_key(&s, k.baseAddress, k.count, backend.code)
        }
        guard status == 0 else { return nil }
        schedule = s
    }

    /// Forward cipher of one 16-byte block (nil if `block` is not 16 bytes).
    public func encryptBlock(_ block: [UInt8]) -> [UInt8]? { run(block, decrypt: false) }

    /// Inverse cipher of one 16-byte block (nil if `block` is not 16 bytes).
    public func decryptBlock(_ block: [UInt8]) -> [UInt8]? { run(block, decrypt: true) }

    private func run(_ block: [UInt8], decrypt: Bool) -> [UInt8]? {
        guard block.count == 16 else { return nil }
        var out = [UInt8](repeating: 0, count: 16)
        withUnsafePointer(to: schedule) { s in
            block.withUnsafeBufferPointer { i in
                out.withUnsafeMutableBufferPointer { o in
                    if decrypt { caes_decrypt_block(s, i.baseAddress, o.baseAddress, backend.code) }
                    else { caes_encrypt_block(s, i.baseAddress, o.baseAddress, backend.code) }
                }
            }
        }
        return out
    }
}
