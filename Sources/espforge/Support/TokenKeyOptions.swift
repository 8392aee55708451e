import ArgumentParser
import ESPCore
import Foundation
import KeyCustody
import SecureBoot

/// Options for keys on PKCS#11 tokens (`--key pkcs11:…`). The PIN is never an option: it comes
/// from a PIN file, `$ESPFORGE_PKCS11_PIN` or a no-echo prompt.
struct PKCS11Options: ParsableArguments {
    @Option(name: .customLong("pkcs11-module"),
            help: "PKCS#11 module for pkcs11: keys (default: $ESPFORGE_PKCS11_MODULE).")
    var module: String?

    @Option(name: .customLong("pkcs11-pin-file"),
            help: "File holding the token PIN (mode 0600). Else $ESPFORGE_PKCS11_PIN, else a prompt.")
    var pinFile: String?

    @Option(name: .customLong("hsm-config"),
            help: "espsecure's HSM config INI ([hsm_config] pkcs11_lib, slot, label …) instead of --key.")
    var hsmConfig: String?
}

/// Opening keys named on the command line or in the manifest: PEM files or `pkcs11:` URIs.
enum TokenCLI {
    /// File, environment, then (on a terminal only) a no-echo prompt.
    static func pinSource(file: String?, uriPinSource: String? = nil) -> PINSource {
        PINSource.interactive(file: file ?? uriPinSource)
    }

    static func isToken(_ key: String) -> Bool { PKCS11URI.isURI(key) }

    /// A signer for `key` (PEM path or pkcs11: URI).
    static func signer(_ key: String, _ options: PKCS11Options, manifestModule: String? = nil,
                       manifestPINFile: String? = nil) throws -> any ImageSigningKey {
        if isToken(key) {
            let uri = try PKCS11URI.parse(key)
            let module = try PKCS11ModuleChoice.resolve(commandLine: options.module, manifest: manifestModule, uri: uri)
            return try TokenKeys.signingKey(uri: uri, modulePath: module,
                                            pin: pinSource(file: options.pinFile ?? manifestPINFile, uriPinSource: uri.pinSource))
        }
        guard case .privateKey(let k) = try SecureBootCLI.loadKey(key) else {
            throw FileContextError(file: key, underlying: SecureBootError.needPrivateKey)
        }
        return k
    }

    /// The signer an espsecure HSM config names.
    static func signer(hsmConfig path: String, _ options: PKCS11Options) throws -> any ImageSigningKey {
        let config = try HSMConfig.load(path: path)
        return try TokenKeys.signingKey(uri: config.privateKeyURI, modulePath: options.module ?? config.modulePath,
                                        pin: config.pinSource(pinSource(file: options.pinFile)))
    }

    /// A public key from a PEM (private or public), a pkcs11: URI, or an HSM config.
    static func verifyingKey(_ key: String?, _ options: PKCS11Options) throws -> VerifyingKey {
        if let path = options.hsmConfig {
            let config = try HSMConfig.load(path: path)
            return try TokenKeys.verifyingKey(uri: config.publicKeyURI, modulePath: options.module ?? config.modulePath,
                                              pin: config.pinSource(pinSource(file: options.pinFile)))
        }
        guard let key else { throw ValidationError("give --key (PEM file or pkcs11: URI) or --hsm-config FILE") }
        if isToken(key) {
            let uri = try PKCS11URI.parse(key)
            let module = try PKCS11ModuleChoice.resolve(commandLine: options.module, manifest: nil, uri: uri)
            return try TokenKeys.verifyingKey(uri: uri, modulePath: module, pin: pinSource(file: options.pinFile, uriPinSource: uri.pinSource))
        }
        return try SecureBootCLI.loadKey(key).verifyingKey
    }
}
