//! Small helpers for building and reading plain JavaScript objects.

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

/// A plain object with these properties.
pub fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        // Setting a property on a fresh plain object cannot fail.
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

/// Property `key` of `value`, `undefined` when absent or not an object or function.
pub fn get(value: &JsValue, key: &str) -> JsValue {
    if !(value.is_object() || value.is_function()) {
        return JsValue::UNDEFINED;
    }
    Reflect::get(value, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// Property `key` as a string, if it is one.
pub fn get_str(value: &JsValue, key: &str) -> Option<String> {
    get(value, key).as_string()
}

/// Property `key` as a number, if it is one.
pub fn get_f64(value: &JsValue, key: &str) -> Option<f64> {
    get(value, key).as_f64()
}

/// Calls method `name` of `target` with `args`.
pub fn call(target: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let f: js_sys::Function = get(target, name).dyn_into()?;
    let args: js_sys::Array = args.iter().collect();
    f.apply(target, &args)
}

/// A JavaScript string.
pub fn s(v: &str) -> JsValue {
    JsValue::from_str(v)
}
