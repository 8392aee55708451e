import CAES

// AES-256 (FIPS-197) and XTS-AES-256 (IEEE 1619) for NVS encryption.
//
// swift-crypto does not expose raw AES block operations or XTS. The block cipher is the project's
// CAES target (AES-NI when the CPU has it, else portable tables), shared with flash encryption;
// the XTS mode NVS needs (32-byte entries, tweak = the entry's address as a little-endian number,
// no byte reversal, no ciphertext stealing) is here.

/// AES with a 256-bit key: the expanded key schedule and single-block encryption/decryption.
struct AES256: Sendable {
    private let schedule: caes_schedule
    private static let backend = Int32(CAES_BACKEND_AUTO)

    init?(key: ArraySlice<UInt8>) {
        guard key.count == 32 else { return nil }
        var s = caes_schedule()
        let status = Array(key).withUnsafeBufferPointer { caes_expand_key(&s, $0.baseAddress, $0.count, Self.backend) }
        guard status == 0 else { return nil }
        schedule = s
    }

    /// Encrypts the 16 bytes at `offset` of `block` in place.
    func encrypt(_ block: inout [UInt8], at offset: Int) { run(&block, offset, decrypt: false) }

    /// Decrypts the 16 bytes at `offset` of `block` in place.
    func decrypt(_ block: inout [UInt8], at offset: Int) { run(&block, offset, decrypt: true) }

    private func run(_ block: inout [UInt8], _ offset: Int, decrypt: Bool) {
        guard offset >= 0, offset + 16 <= block.count else { return }
        withUnsafePointer(to: schedule) { s in
            block.withUnsafeMutableBufferPointer { b in
                guard let p = b.baseAddress?.advanced(by: offset) else { return }
                if decrypt { caes_decrypt_block(s, p, p, Self.backend) } else { caes_encrypt_block(s, p, p, Self.backend) }
            }
        }
    }
}

/// XTS-AES-256 with a 64-byte key (data key ‖ tweak key), for data units of whole blocks.
public struct XTSAES256: Sendable {
    private let dataCipher: AES256
    private let tweakCipher: AES256

    /// `key` = 32-byte data key followed by 32-byte tweak key; nil unless exactly 64 bytes.
    public init?(key: [UInt8]) {
        guard key.count == 64,
              let d = AES256(key: key[0..<32]), let t = AES256(key: key[32..<64]) else { return nil }
        dataCipher = d
        tweakCipher = t
    }

    /// Encrypts (or decrypts) `count` bytes (a multiple of 16) at `offset` of `buffer` in place
    /// as one data unit whose tweak is `sector` as a 16-byte little-endian number.
    public func process(_ buffer: inout [UInt8], offset: Int, count: Int, sector: UInt64, decrypt: Bool = false) {
        var tweak = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 { tweak[i] = UInt8((sector >> (8 * UInt64(i))) & 0xFF) }
        tweakCipher.encrypt(&tweak, at: 0)
        var block = [UInt8](repeating: 0, count: 16)
        var pos = offset
        while pos + 16 <= offset + count {
            for i in 0..<16 { block[i] = buffer[pos + i] ^ tweak[i] }
            if decrypt { dataCipher.decrypt(&block, at: 0) } else { dataCipher.encrypt(&block, at: 0) }
            for i in 0..<16 { buffer[pos + i] = block[i] ^ tweak[i] }
            // Multiply the tweak by x in GF(2^128) (little-endian byte order).
            var carry: UInt8 = 0
            for i in 0..<16 {
                let next = tweak[i] >> 7
                tweak[i] = (tweak[i] << 1) | carry
                carry = next
            }
            if carry != 0 { tweak[0] ^= 0x87 }
            pos += 16
        }
    }
}
