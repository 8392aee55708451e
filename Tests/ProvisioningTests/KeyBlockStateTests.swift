import EFuse
import Testing
@testable import Provisioning

/// Issue 15 §5: the registry said `FLASH_ENCRYPTION_BLOCK1 = empty` for devices whose key was
/// burned and read-protected, because a read-protected block reads back as zeros.
@Suite("eFuse summary: the flash-encryption key block")
struct KeyBlockStateTests {
    /// BLOCK0 word 0: WR_DIS bits 15:0, RD_DIS bits 19:16, FLASH_CRYPT_CNT bits 26:20.
    func efuses(word0: UInt32, block1: [UInt32] = Array(repeating: 0, count: 8)) throws -> EFuseArray {
        var bytes = [UInt8](repeating: 0, count: 124)
        for i in 0..<4 { bytes[i] = UInt8(truncatingIfNeeded: word0 >> (8 * UInt32(i))) }
        for (w, v) in block1.enumerated() {
            for i in 0..<4 { bytes[0x1C + 4 * w + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
        }
        return try EFuseArray(layout: .esp32, bytes: bytes)
    }

    @Test func readProtectedZerosWithKeyBurnEvidenceAreBurned() throws {
        let rdDisBlock1: UInt32 = 1 << 16
        // As read from a real chip: zeros, RD_DIS bit 0, FLASH_CRYPT_CNT = 1.
        #expect(Provisioner.keyBlockState(try efuses(word0: rdDisBlock1 | 1 << 20)) == "burned, read-protected")
        // Zeros, RD_DIS and BLOCK1 write-disabled (WR_DIS bit 7), encryption not enabled yet.
        #expect(Provisioner.keyBlockState(try efuses(word0: rdDisBlock1 | 1 << 7)) == "burned, read-protected")
        #expect(Provisioner.efuseSummary(try efuses(word0: rdDisBlock1 | 1 << 20))["FLASH_ENCRYPTION_BLOCK1"] == "burned, read-protected")
        // Read-protected with no other evidence: not claimed either way.
        #expect(Provisioner.keyBlockState(try efuses(word0: rdDisBlock1)) == "read-protected, contents unknown")
    }

    @Test func visibleStatesAreUnchanged() throws {
        #expect(Provisioner.keyBlockState(try efuses(word0: 0)) == "empty")
        #expect(Provisioner.keyBlockState(try efuses(word0: 0, block1: [1, 0, 0, 0, 0, 0, 0, 0])) == "burned, readable")
        #expect(Provisioner.keyBlockState(try efuses(word0: 1 << 16, block1: [1, 0, 0, 0, 0, 0, 0, 0])) == "burned, read-protected")
    }
}
