import Foundation
import Testing
import TestSupport
@testable import SecureBoot

/// A temporary folder for one test, with small file helpers.
struct Scratch {
    let dir: URL

    init(_ label: String = "sb") throws {
        dir = try TestEnvironment.temporaryDirectory("espforge-\(label)")
    }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    @discardableResult
    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let p = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    func read(_ name: String) throws -> [UInt8] {
        guard let d = FileManager.default.contents(atPath: path(name)) else {
            throw TestSupportError.missing(path(name))
        }
        return [UInt8](d)
    }

    func remove() { try? FileManager.default.removeItem(at: dir) }
}

enum Fx {
    static let dir = "secure/"
    static func path(_ name: String) -> String { TestEnvironment.fixture(dir + name).path }
    static func bytes(_ name: String) throws -> [UInt8] { try TestEnvironment.fixtureBytes(dir + name) }
    static func key(_ name: String) throws -> KeyMaterial {
        try KeyMaterial.load(pem: String(decoding: try bytes(name), as: UTF8.self))
    }
    static let rsaKey = "rsa_secure_boot_signing_key.pem"
    static let rsaKey2 = "rsa_secure_boot_signing_key2.pem"
    static let rsaKey3 = "rsa_secure_boot_signing_key3.pem"
    static let rsaPub = "rsa_secure_boot_signing_pubkey.pem"
    static let ec256Key = "ecdsa256_secure_boot_signing_key.pem"
    static let ec256Pub = "ecdsa256_secure_boot_signing_pubkey.pem"
    static let ec384Key = "ecdsa384_secure_boot_signing_key.pem"
    static let unsigned = "bootloader_unsigned_v2.bin"
}

/// Runs espforge and expects success, with the output in the failure message otherwise.
@discardableResult
func espforgeOK(_ args: [String], _ context: String = "") throws -> ProcessResult {
    let r = try Espforge.run(args)
    #expect(r.status == 0, "espforge \(args.joined(separator: " ")) failed \(context): \(r.err)")
    return r
}

/// Runs espsecure and expects success.
@discardableResult
func espsecureOK(_ args: [String], _ context: String = "") throws -> ProcessResult {
    let r = try Oracle.run("espsecure", args)
    #expect(r.status == 0, "espsecure \(args.joined(separator: " ")) failed \(context): \(r.out) \(r.err)")
    return r
}

/// An image-like random payload of random length (not 4 KiB aligned in general).
func randomImage(_ rng: inout SeededRandom, minLength: Int = 1000, maxLength: Int = 40000) -> [UInt8] {
    let n = Int.random(in: minLength...maxLength, using: &rng)
    var b = rng.bytes(n)
    if !b.isEmpty { b[0] = 0xE9 }
    return b
}

let oracleTrait = ConditionTrait.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason))
let fixtureTrait = ConditionTrait.enabled(if: TestEnvironment.fixturesOrCI, "../shared/fixtures missing")
