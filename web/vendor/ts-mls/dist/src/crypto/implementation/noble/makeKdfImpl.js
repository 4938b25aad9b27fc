export * from "../default/makeKdfImpl.js";
//# sourceMappingURL=makeKdfImpl.js.map