// The page for a meeting link that leads nowhere: only words to translate.
import { translatePage, languagePicker } from './i18n.js';

translatePage();
languagePicker(/** @type {HTMLElement} */ (document.getElementById('language')));
