import { useState } from 'react'
import Modal from './Modal.jsx'

// A conversation's own system prompt and temperature; empty means the served defaults.
export default function SettingsPanel({ conversation, onSave, onClose }) {
  const [prompt, setPrompt] = useState(conversation.system_prompt || '')
  const [temperature, setTemperature] = useState(conversation.temperature ?? '')
  const [error, setError] = useState('')
  const [saving, setSaving] = useState(false)

  async function save(event) {
    event.preventDefault()
    const value = temperature === '' ? null : Number(temperature)
    if (value !== null && !(value >= 0 && value <= 2)) {
      setError('The temperature is a number from 0 to 2, or empty for the default.')
      return
    }
    setSaving(true)
    setError('')
    try {
      await onSave({ system_prompt: prompt.trim() ? prompt : '', temperature: value })
      onClose()
    } catch (e) {
      setError(e.message)
      setSaving(false)
    }
  }

  return (
    <Modal title="Conversation settings" closeLabel="Close settings" onClose={onClose}>
      <p>
        Download this conversation:{' '}
        <a href={`/api/conversations/${encodeURIComponent(conversation.id)}/export?format=md`} download>
          Markdown
        </a>{' '}
        ·{' '}
        <a href={`/api/conversations/${encodeURIComponent(conversation.id)}/export?format=json`} download>
          JSON
        </a>
      </p>
      <form className="settings-form" onSubmit={save} noValidate>
        <label>
          System prompt
          <textarea
            dir="auto"
            rows={5}
            maxLength={4000}
            placeholder="Empty: dziri's own"
            value={prompt}
            onChange={(e) => setPrompt(e.target.value)}
          />
        </label>
        <label>
          Temperature
          <input type="number" min="0" max="2" step="0.1" placeholder="Empty: the default" value={temperature} onChange={(e) => setTemperature(e.target.value)} />
        </label>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <div className="settings-actions">
          <button type="button" className="small" onClick={() => { setPrompt(''); setTemperature('') }}>
            Use the defaults
          </button>
          <button type="submit" className="primary small" disabled={saving}>
            Save
          </button>
        </div>
      </form>
    </Modal>
  )
}
