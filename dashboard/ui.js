import { h } from 'preact'
import { useState } from 'preact/hooks'
import htm from 'htm'
import { ApiError } from './api.js'

export const html = htm.bind(h)

/** The form field a 400 message names ("body/path must …", "… property 'name'", or the bare name). */
export function fieldOfMessage (message, names) {
  const pathMatch = /(?:body|querystring)\/([A-Za-z0-9_]+)/.exec(message)
  if (pathMatch && names.includes(pathMatch[1])) return pathMatch[1]
  const required = /property '([A-Za-z0-9_]+)'/.exec(message)
  if (required && names.includes(required[1])) return required[1]
  for (const name of [...names].sort((a, b) => b.length - a.length)) {
    if (new RegExp(`(^|[^A-Za-z0-9_])${name}([^A-Za-z0-9_]|$)`).test(message)) return name
  }
  return null
}

export function confirmDelete (what) {
  return window.confirm(`Delete ${what}? This cannot be undone.`)
}

/** Shows a value from the API as the form edits it. */
function formatValue (field, value) {
  if (value === undefined || value === null) return field.type === 'checkbox' ? false : ''
  switch (field.type) {
    case 'checkbox': return Boolean(value)
    case 'json': return JSON.stringify(value, null, 2)
    case 'csv': case 'ints': return Array.isArray(value) ? value.join(', ') : String(value)
    case 'targets': return Array.isArray(value) ? value.map((target) => `${target.url} ${target.weight ?? 1}`).join('\n') : ''
    default: return String(value)
  }
}

/** Turns what the form holds into the API value; throws a message for the field when it cannot. */
function parseValue (field, text, editing) {
  if (field.type === 'checkbox') return text
  const trimmed = typeof text === 'string' ? text.trim() : text
  if (trimmed === '') {
    if (!editing) return undefined
    if (field.type === 'csv' || field.type === 'ints' || field.type === 'targets') return []
    return field.type === 'json' || field.nullable ? null : undefined
  }
  switch (field.type) {
    case 'json':
      try { return JSON.parse(trimmed) } catch { throw new Error(`${field.name}: not valid JSON`) }
    case 'csv': return trimmed.split(',').map((part) => part.trim()).filter((part) => part !== '')
    case 'ints': return trimmed.split(',').map((part) => part.trim()).filter((part) => part !== '').map((part) => /^-?\d+$/.test(part) ? Number(part) : part)
    case 'number': return /^-?\d+(\.\d+)?$/.test(trimmed) ? Number(trimmed) : trimmed
    case 'targets': return trimmed.split('\n').map((line) => line.trim()).filter((line) => line !== '').map((line) => {
      const [url, weight] = line.split(/\s+/)
      return weight === undefined ? { url } : { url, weight: /^\d+$/.test(weight) ? Number(weight) : weight }
    })
    case 'datetime': {
      const date = new Date(trimmed)
      return Number.isNaN(date.getTime()) ? trimmed : date.toISOString()
    }
    default: return trimmed
  }
}

let nextId = 0
export const uid = (prefix) => `${prefix}-${++nextId}`

/**
 * A form whose every field is labelled with the API field it sets; a 400 from the admin API is
 * shown next to the field its message names (or above the buttons when it names none).
 */
export function ResourceForm ({ fields, initial, editing = false, submitLabel, onSubmit, onCancel, idPrefix }) {
  const [prefix] = useState(() => uid(idPrefix ?? 'form'))
  const [values, setValues] = useState(() => Object.fromEntries(fields.map((field) => [field.name, formatValue(field, initial?.[field.name] ?? (editing ? undefined : field.default))])))
  const [errors, setErrors] = useState({})
  const [formError, setFormError] = useState(null)
  const [busy, setBusy] = useState(false)
  const names = fields.map((field) => field.name)

  async function submit (event) {
    event.preventDefault()
    setErrors({})
    setFormError(null)
    const body = {}
    try {
      for (const field of fields) {
        if (editing && field.createOnly) continue
        const value = parseValue(field, values[field.name], editing)
        if (value !== undefined) body[field.name] = value
      }
    } catch (err) {
      const name = fieldOfMessage(err.message, names)
      if (name !== null) setErrors({ [name]: err.message })
      else setFormError(err.message)
      return
    }
    setBusy(true)
    try {
      await onSubmit(body)
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err)
      const name = err instanceof ApiError && err.status === 400 ? fieldOfMessage(message, names) : null
      if (name !== null) {
        setErrors({ [name]: message })
        document.getElementById(`${prefix}-${name}`)?.focus()
      } else {
        setFormError(message)
      }
    } finally {
      setBusy(false)
    }
  }

  return html`<form onSubmit=${submit} noValidate>
    ${fields.map((field) => {
      if (editing && field.createOnly) return null
      const id = `${prefix}-${field.name}`
      const error = errors[field.name]
      const describedBy = [field.hint ? `${id}-hint` : null, error ? `${id}-error` : null].filter(Boolean).join(' ') || undefined
      const common = { id, name: field.name, 'aria-invalid': error ? 'true' : undefined, 'aria-describedby': describedBy }
      const set = (value) => setValues({ ...values, [field.name]: value })
      let control
      if (field.type === 'checkbox') {
        control = html`<input type="checkbox" ...${common} checked=${values[field.name]} onChange=${(e) => set(e.currentTarget.checked)} />`
      } else if (field.type === 'select') {
        control = html`<select ...${common} value=${values[field.name]} onChange=${(e) => set(e.currentTarget.value)}>
          ${field.options.map((option) => html`<option value=${option}>${option === '' ? '(none)' : option}</option>`)}
        </select>`
      } else if (['json', 'textarea', 'targets', 'pem'].includes(field.type)) {
        control = html`<textarea ...${common} rows=${field.rows ?? 4} value=${values[field.name]} onInput=${(e) => set(e.currentTarget.value)}></textarea>`
      } else {
        control = html`<input type=${field.type === 'password' ? 'password' : 'text'} ...${common} value=${values[field.name]} onInput=${(e) => set(e.currentTarget.value)} autocomplete="off" />`
      }
      return html`<div class="field">
        <label for=${id}><code>${field.name}</code>${field.required ? ' (required)' : ''}</label>
        ${field.hint ? html`<div class="hint" id=${`${id}-hint`}>${field.hint}</div>` : null}
        ${control}
        ${error ? html`<p class="field-error" id=${`${id}-error`} role="alert">${error}</p>` : null}
      </div>`
    })}
    ${formError ? html`<p class="error" role="alert">${formError}</p>` : null}
    <div class="row">
      <button type="submit" disabled=${busy}>${submitLabel}</button>
      ${onCancel ? html`<button type="button" class="secondary" onClick=${onCancel}>Cancel</button>` : null}
    </div>
  </form>`
}

export function Notice ({ message }) {
  if (message === null || message === undefined) return null
  return html`<p class=${`notice${message.error ? ' error' : ''}`} role=${message.error ? 'alert' : 'status'}>${message.text}</p>`
}

export function Unavailable ({ what }) {
  return html`<p class="notice" role="status">${what} ${what.endsWith('s') ? 'are' : 'is'} not available in this gateway.</p>`
}

export const formatTime = (iso) => iso ? new Date(iso).toLocaleString() : ''
export const formatNumber = (value, digits = 0) => value === null || value === undefined ? '–' : Number(value).toLocaleString(undefined, { maximumFractionDigits: digits })
